"""The `timesformer-lite` entry point: dispatch, help, and one-line errors."""

import importlib
import subprocess
import sys

import pytest

import timesformer_lite as tl
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


def fresh_python(code: str) -> str:
    """What `code` prints in a new interpreter (nothing of the package imported yet)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_the_package_and_the_cli_help_load_no_torch():
    """The dispatcher's promise: `--help` answers without loading torch; only the command that runs loads it."""
    code = (
        "import sys, timesformer_lite as tl; from timesformer_lite.cli import main; main(['--help']); "
        "print('torch' in sys.modules, tl.ModelConfig.__name__, 'torch' in sys.modules)"
    )
    assert fresh_python(code).splitlines()[-1] == "False ModelConfig False"


def test_public_names_are_the_functions_whatever_was_imported_first():
    """`tl.fuse` and `tl.predict` share their names with the modules that define them; importing those modules
    first (as the CLI does) must not hide the functions."""
    code = (
        "import importlib, types, timesformer_lite.fuse, timesformer_lite.predict, timesformer_lite as tl; "
        "m = importlib.import_module('timesformer_lite.predict'); "
        "print(tl.fuse is m.fuse, tl.predict is m.predict, isinstance(m, types.ModuleType), "
        "tl.data.VideoReadError.__name__, sorted(tl.__all__) == sorted(set(tl.__all__) & set(dir(tl))))"
    )
    assert fresh_python(code) == "True True True VideoReadError True"
    for name in tl.__all__:
        assert getattr(tl, name) is getattr(importlib.import_module(f"timesformer_lite.{tl._HOME[name]}"), name)
    with pytest.raises(AttributeError, match="module 'timesformer_lite' has no attribute 'nothing'"):
        tl.nothing  # noqa: B018
