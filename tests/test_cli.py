"""The `timesformer-lite` entry point: dispatch, help, and one-line errors."""

import subprocess
import sys

from timesformer_lite.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_info_reports_parameters_and_flops(capsys):
    assert main(["info", "--config", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "parameters: " in out and "GFLOP per clip" in out
    assert "attention maps 'time': 2 layers of (1, 16, 2, 4, 4)" in out


def test_config_errors_are_one_line_not_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "timesformer_lite", "info", "--config", "smoke", "model.dept=3"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown config key 'model.dept'" in lines[0]
