"""Ctrl-C, as a user presses it in a terminal: one line and exit 130 at any moment of `train` (its imports, a
checkpoint write, the run, the exit), the command that resumes the run, and no traceback.

Every child here gets SIGINT at its default and is killed when its test ends (`process_fixtures.started`), so
the tests hold when pytest itself runs with SIGINT ignored (a script's background job, nohup)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import torch
from process_fixtures import cli_command, started, wait_until
from safety_fixtures import one_line_error, outcome, smoke_args, smoke_data

import timesformer_lite as tl

# raises SIGINT in the process when torch starts importing: a Ctrl-C at a fixed point of the command's imports
CTRL_C_AT_TORCH = """
import signal
class CtrlCAtTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            signal.raise_signal(signal.SIGINT)
sys.meta_path.insert(0, CtrlCAtTorch())
"""
# an exit handler that takes a while, as torch's own do on a loaded machine, registered first so that it runs last
SLOW_EXIT = "import atexit, time; atexit.register(time.sleep, 20)"


def ctrl_c_outcome(child, timeout: float = 60) -> tuple[int, str]:
    code, _, err = child.finish(timeout)
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    return code, err


def test_ctrl_c_while_train_imports_torch_is_one_line_and_exit_130(tmp_path):
    with started(cli_command("train", *smoke_args(tmp_path, tmp_path / "runs"), setup=CTRL_C_AT_TORCH)) as child:
        code, err = ctrl_c_outcome(child)
    assert code == 130, err[-3000:]
    assert one_line_error(err) == "timesformer-lite train: interrupted"
    assert not (tmp_path / "runs").exists()


def test_a_real_ctrl_c_during_the_first_seconds_of_train_is_one_line_and_exit_130(tmp_path):
    maps = None
    with started(cli_command("train", *smoke_args(tmp_path, tmp_path / "runs"))) as child:
        maps = Path(f"/proc/{child.proc.pid}/maps")
        wait_until(lambda: "libtorch" in maps.read_text(), 60, "torch's library loaded")  # torch is importing
        child.proc.send_signal(signal.SIGINT)
        code, err = ctrl_c_outcome(child)
    assert code == 130, err[-3000:]
    assert one_line_error(err).startswith("timesformer-lite train: interrupted")


def test_ctrl_c_during_training_says_where_to_resume_from(tmp_path):
    data = smoke_data(tmp_path / "data")
    args = smoke_args(data, tmp_path / "runs", "train.epochs=200", "train.checkpoint_every=1", "train.test=false")
    last = tmp_path / "runs" / "smoke" / "last.pt"
    with started(cli_command("train", *args)) as child:
        wait_until(last.exists, 90, "the first checkpoint")
        time.sleep(0.3)
        child.proc.send_signal(signal.SIGINT)
        code, err = ctrl_c_outcome(child)
    assert code == 130, err[-2000:]
    line = one_line_error(err)
    assert line.startswith("timesformer-lite train: interrupted: interrupted at epoch ")
    assert f"resume from '{last}'" in line and "train.resume=auto" in line
    saved = torch.load(last, weights_only=True)
    assert f"(epoch {saved['epoch'] + 1}, step {saved['step_in_epoch']}/2)" in line
    assert tl.load_config(saved["config"]).train.epochs == 200


def test_a_second_ctrl_c_while_the_process_exits_ends_it_without_a_traceback(tmp_path):
    """The first Ctrl-C stops the run with its line; a second one, pressed while the process runs its exit
    handlers (torch's import tabulate, and took long enough to be hit), printed "Exception ignored in atexit
    callback" and a KeyboardInterrupt traceback. Now it ends the process at once, by the signal."""
    data = smoke_data(tmp_path / "data")
    args = smoke_args(data, tmp_path / "runs", "train.epochs=200", "train.checkpoint_every=1", "train.test=false")
    with started(cli_command("train", *args, setup=SLOW_EXIT)) as child:
        wait_until((tmp_path / "runs" / "smoke" / "last.pt").exists, 90, "the first checkpoint")
        child.proc.send_signal(signal.SIGINT)
        child.err.wait_for("timesformer-lite train: interrupted", 60)
        time.sleep(0.5)  # in the exit handlers now: the slow one sleeps 20 s
        child.proc.send_signal(signal.SIGINT)
        code, err = ctrl_c_outcome(child, timeout=10)
    assert code == -signal.SIGINT, err[-3000:]
    assert one_line_error(err).startswith("timesformer-lite train: interrupted: interrupted at epoch ")


def test_ctrl_c_twice_inside_a_checkpoint_write_reaches_the_handler_once_after_the_write(tmp_path, monkeypatch):
    """A Ctrl-C can land inside torch.save, whose C++ writer calls the Python file's write. Raised there, it came
    out as torch's RuntimeError ("unexpected pos") or aborted the process from the writer's destructor ("write to
    closed file") instead of stopping the run cleanly. Two Ctrl-Cs during a write are held until the write and
    what the trainer records after it are done, and then reach the process's handler once."""
    from timesformer_lite.train import checkpoint, interrupts

    write, writes = checkpoint._Writes.write, []

    def write_then_ctrl_c(self, data):
        writes.append(len(data))
        if len(writes) in (3, 5):
            signal.raise_signal(signal.SIGINT)  # delivered while torch.save is mid-file
        return write(self, data)

    monkeypatch.setattr(checkpoint._Writes, "write", write_then_ctrl_c)
    path, recorded = tmp_path / "last.pt", tmp_path / "recorded"

    def save():
        seen = []  # for each Ctrl-C that reaches the handler: was the write done and recorded by then?
        signal.signal(signal.SIGINT, lambda signum, frame: seen.append(recorded.exists()))
        with interrupts.interrupts_deferred():
            checkpoint.save_checkpoint({"x": torch.arange(1000), "y": torch.arange(10)}, path)
            recorded.touch()  # what the trainer records after the write
        assert len(writes) >= 5 and seen == [True], (writes, seen)

    before = signal.getsignal(signal.SIGINT)
    result = outcome(save)  # in a child: without the deferral it aborts
    assert result["kind"] == "ok", result
    assert torch.equal(torch.load(path)["x"], torch.arange(1000))
    assert signal.getsignal(signal.SIGINT) is before  # this process's handler is untouched


def test_ctrl_c_in_a_process_that_ignores_it_is_still_ignored_during_a_write(tmp_path):
    """Under a parent that ignores SIGINT (nohup-like), the deferral must not turn the ignored signal into an
    interrupt: the held Ctrl-C goes back to the handler that was there, which ignores it."""
    from timesformer_lite.train import checkpoint, interrupts

    def save():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with interrupts.interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            checkpoint.save_checkpoint({"x": torch.arange(10)}, tmp_path / "last.pt")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    assert outcome(save)["kind"] == "ok"
