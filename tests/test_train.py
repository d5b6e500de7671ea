"""The trainer on the smoke preset: learning, checkpoints, exact resume after a kill, DDP, NaN, test protocol."""

import json
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from process_fixtures import cli_command, started, user_env

import timesformer_lite as tl
from timesformer_lite.data import build_dataset, build_loader
from timesformer_lite.data.sampler import ResumableSampler
from timesformer_lite.train import TrainingDiverged, evaluate, run
from timesformer_lite.train.metrics import average_views
from timesformer_lite.train.resume import config_changes, rng_state, set_rng_state
from timesformer_lite.utils import accumulator_dtype

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """The smoke preset's toy data, generated once for this module."""
    root = tmp_path_factory.mktemp("smoke_data")
    cfg = tl.load_config("smoke", [f"data.root={root}"])
    build_dataset(cfg, "train")  # generates the toy clips on first use
    return root


def smoke(root, out, *extra):
    return [f"data.root={root}", f"train.out_dir={out}", *extra]


def final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"]


def torchrun(*overrides: str, timeout: float = 300) -> str:
    """`torchrun --nproc_per_node=2 -m timesformer_lite train --config smoke OVERRIDES` on gloo, one thread a rank;
    its stdout. A rank that hangs fails the test at `timeout`, and every process of the run is killed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    with started([*cmd, "-m", "timesformer_lite", "train", "--config", "smoke", *overrides]) as child:
        code, out, err = child.finish(timeout)
    assert code == 0, err[-3000:]
    return out


def unreadable(root: Path, cfg, clips: list[int]) -> None:
    """Overwrite the training clips at these positions of epoch 0's order (all ranks) with bytes no decoder reads."""
    items = build_dataset(tl.load_config(cfg, ["data.cache=false"]), "train").items
    order = ResumableSampler(len(items), shuffle=True, seed=cfg.train.seed, drop_last=True).order()
    for position in clips:
        (root / items[order[position]][0]).write_bytes(b"not a video")


def test_training_lowers_the_loss_on_a_fixed_batch_and_checkpoints_round_trip(smoke_data, tmp_path):
    cfg = tl.load_config("smoke", smoke(smoke_data, tmp_path, "train.epochs=3", "train.lr=0.003", "train.test=false"))
    batch = next(iter(build_loader(build_dataset(cfg, "val"), 16, shuffle=False, num_workers=0, seed=0)))
    torch.manual_seed(cfg.train.seed)
    before_model = tl.TimeSformer(cfg.model).eval()
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(before_model(batch["video"]), batch["label"]).item()
    result = run(cfg)
    model = tl.TimeSformer(cfg.model).eval()
    model.load_state_dict(final_weights(result.run_dir))
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(model(batch["video"]), batch["label"]).item()
    assert after < before - 0.05
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    # best.pt is the model of the best validation epoch, loadable without unpickling code
    best = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert best["epoch"] == result.best_epoch and best["classes"] == build_dataset(cfg, "val").classes
    recorded = tl.load_config(best["config"])  # the run's config, with the model's training options resolved
    assert recorded == tl.load_config(result.run_dir / "config.yaml")
    assert (recorded.data, recorded.train) == (cfg.data, cfg.train)
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    for key in ("best_val_top1", "epochs", "wall_time_s", "train_clips_per_s", "peak_memory_mb", "bad_videos_skipped"):
        assert key in summary
    assert summary["epochs"] == 3 and summary["bad_videos_skipped"] == 0


def test_a_killed_run_resumes_to_exactly_the_same_weights(smoke_data, tmp_path):
    args = smoke(smoke_data, tmp_path, "train.epochs=3", "train.checkpoint_every=1", "train.test=false")
    reference = run("smoke", [*args, "train.name=uninterrupted"])
    # bitwise equality needs the same float summation order: the same number of threads in every run
    env = user_env(OMP_NUM_THREADS=str(torch.get_num_threads()))
    last = tmp_path / "killed" / "last.pt"
    killed_at = None
    with started(cli_command("train", "--config", "smoke", *args, "train.name=killed"), env=env) as child:
        deadline = time.time() + 120
        while time.time() < deadline and child.proc.poll() is None:
            if last.exists():
                try:
                    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
                except Exception:  # being replaced right now; atomic rename means the next read works
                    continue
                if step >= 4:
                    child.proc.send_signal(signal.SIGKILL)
                    killed_at = step
                    break
            time.sleep(0.005)
        code = child.proc.wait(60)
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    total = reference.summary["history"][-1]["global_step"]
    assert killed_at is not None and killed_at < total
    at_kill = torch.load(last, map_location="cpu", weights_only=True)
    resumed = run("smoke", [*args, "train.name=killed", "train.resume=auto"])
    assert resumed.history[-1]["global_step"] == total
    # the epoch cut by the kill reports all of its steps, not only those run after the resume
    assert [(r["epoch"], r["loss"], r["top1"]) for r in resumed.history] == [
        (r["epoch"], r["loss"], r["top1"]) for r in reference.history
    ]
    cut = resumed.history[at_kill["epoch"]]
    assert at_kill["step_in_epoch"] == 0 or cut["seconds"] > at_kill["epoch_seconds"] > 0
    assert all(r["clips_per_s"] > 0 for r in resumed.history)
    a, b = final_weights(reference.run_dir), final_weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(smoke_data, tmp_path):
    # SGD, not AdamW: Adam divides by sqrt(v), which blows float summation-order noise in near-zero gradients up
    common = smoke(
        smoke_data, tmp_path, "train.epochs=1", "train.test=false", "model.drop_path_rate=0.0", "train.optimizer=sgd"
    )
    single = run("smoke", [*common, "train.name=single", "train.batch_size=8"])
    torchrun(*common, "train.name=ddp", "train.batch_size=4")
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 8
    assert summary["ranks_in_sync"] is True
    a, b = final_weights(single.run_dir), final_weights(tmp_path / "ddp")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    assert summary["history"][0]["val_top1"] == pytest.approx(single.history[0]["val_top1"])


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(smoke_data, tmp_path):
    args = smoke(smoke_data, tmp_path, "train.lr=1e30", "train.clip_grad=0.0", "train.checkpoint_every=1")
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf).*last good checkpoint.*train\.resume=auto"):
        run("smoke", [*args, "train.epochs=3", "train.test=false"])
    state = torch.load(tmp_path / "smoke" / "last.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_the_loss_is_read_once_per_log_interval_and_at_the_end_of_an_epoch(smoke_data, tmp_path, monkeypatch):
    """nanoGPT's contract: no step waits for the device; the loss and its finiteness (every rank's, in one
    all-reduce) are read every train.log_every optimizer steps, and once more when the epoch ends."""
    from timesformer_lite.train.trainer import Trainer

    reads, training = [], []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename  # our code's reads (torch's optimizers keep steps on the CPU)
            if training and "timesformer_lite" in caller:
                reads.append((_name, Path(caller).name))
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    epoch = Trainer.train_epoch

    def train_epoch(self):
        training.append(True)
        try:
            return epoch(self)
        finally:
            training.clear()

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    # 80 clips, batches of 8, two micro-batches a step: 5 steps; reads at steps 2 and 4 and at the end, or at the end
    for log_every, expected in ((2, 3), (10, 1)):
        reads.clear()
        args = ["train.epochs=1", "train.test=false", "train.grad_accum=2", f"train.log_every={log_every}"]
        result = run("smoke", smoke(smoke_data, tmp_path, *args, f"train.name=log{log_every}"))
        assert result.history[-1]["global_step"] == 5
        # one read of all the sums at once, and the sampler's read of the epoch's order
        assert sorted(reads) == [("tolist", "sampler.py")] + [("tolist", "trainer.py")] * expected, reads


def test_a_batch_of_unreadable_clips_is_skipped_counted_and_changes_no_weight(smoke_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(smoke_data, root)
    cfg = tl.load_config("smoke", smoke(root, tmp_path, "train.epochs=1", "train.test=false"))
    unreadable(root, cfg, list(range(8)))  # the first batch of the epoch, every clip of it
    result = run(cfg)
    assert result.history[0]["skipped"] == 8 and result.summary["bad_videos_skipped"] == 8
    assert math.isfinite(result.history[0]["loss"]) and result.history[0]["global_step"] == 10
    # AdamW counts the steps it took: the empty batch's step was skipped, the schedule went on
    state = torch.load(result.run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {9}
    assert state["scheduler"]["last_epoch"] == 10


def test_under_ddp_a_batch_unreadable_on_one_rank_is_skipped_alike_by_both(smoke_data, tmp_path):
    """The loader yields an empty batch on rank 1; it crashed there, and rank 0 then waited forever in the
    all-reduce. Both ranks now run the step (rank 1 with a zero-weighted placeholder), stay identical, and the
    skipped clips are counted over both."""
    root = tmp_path / "data"
    shutil.copytree(smoke_data, root)
    cfg = tl.load_config("smoke", smoke(root, tmp_path, "train.batch_size=4"))
    unreadable(root, cfg, [2 * k + 1 for k in range(4)])  # rank 1's first batch: positions 1, 3, 5, 7
    torchrun(*smoke(root, tmp_path, "train.epochs=1", "train.test=false", "train.batch_size=4", "train.name=ddp"))
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    assert summary["history"][0]["skipped"] == 4 and summary["bad_videos_skipped"] == 4
    assert all(torch.isfinite(v).all() for v in final_weights(tmp_path / "ddp").values())


def test_the_running_sums_work_in_float32_where_the_device_has_no_float64(smoke_data, tmp_path, monkeypatch):
    """Apple's MPS has no float64: the trainer keeps its sums in `accumulator_dtype(device)`."""
    from timesformer_lite.train import trainer as trainer_module

    assert accumulator_dtype(torch.device("mps")) == torch.float32
    assert accumulator_dtype(torch.device("cpu")) == accumulator_dtype(torch.device("cuda")) == torch.float64
    args = smoke(smoke_data, tmp_path, "train.epochs=1", "train.test=false")
    float64 = run("smoke", [*args, "train.name=f64"])
    dtypes = []

    def as_on_mps(device):
        dtypes.append(accumulator_dtype(torch.device("mps")))
        return dtypes[-1]

    monkeypatch.setattr(trainer_module, "accumulator_dtype", as_on_mps)
    float32 = run("smoke", [*args, "train.name=f32"])
    assert dtypes == [torch.float32]
    assert float32.history[0]["loss"] == pytest.approx(float64.history[0]["loss"], rel=1e-6)
    assert float32.history[0]["top1"] == float64.history[0]["top1"]


def test_a_resume_refuses_changes_to_the_numbers_and_says_which_accepted_changes_alter_them():
    saved = tl.load_config("smoke").to_dict()

    def changes(*overrides):
        return config_changes(saved, tl.load_config("smoke", list(overrides)).to_dict())

    quiet = ["train.log_every=3", "train.name=x", "data.num_workers=2", "train.checkpoint_every=5", "data.cache=false"]
    assert changes(*quiet) == ([], [])
    refused, noted = changes("model.depth=3", "train.lr=0.1", "train.compile=true", "train.epochs=4")
    assert refused == ["model.depth: 2 -> 3", "train.lr: 0.001 -> 0.1"]
    assert noted == [
        "train.compile: False -> True (compiled kernels round differently)",
        "train.epochs: 1 -> 4 (the cosine schedule's length sets the learning rate of every step)",
    ]
    assert changes("train.schedule=step", "train.epochs=4")[0] == ["train.schedule: 'cosine' -> 'step'"]
    step = tl.load_config("smoke", ["train.schedule=step"]).to_dict()
    assert config_changes(step, tl.load_config("smoke", ["train.schedule=step", "train.epochs=4"]).to_dict()) == (
        [],
        [],
    )  # the step schedule's milestones are epochs: a longer run changes no step


def test_test_protocol_averages_every_view_of_every_video(smoke_data):
    cfg = tl.load_config("smoke", [f"data.root={smoke_data}", "data.num_clips=2", "data.num_crops=3"])
    dataset = build_dataset(cfg, "test")
    batch = next(iter(build_loader(dataset, 4, shuffle=False, num_workers=0, seed=0)))
    assert batch["video"].shape == (4, 6, 4, 3, 32, 32)  # (B, clips x crops, T, C, H, W)
    torch.manual_seed(0)
    model = tl.TimeSformer(cfg.model).eval()
    loader = build_loader(dataset, 4, shuffle=False, num_workers=0, seed=0)
    for method in ("logits", "softmax"):
        result = evaluate(model, loader, device=torch.device("cpu"), num_classes=10, average=method, pairs=True)
        assert result.num_videos == len(dataset) and result.scores.shape == (len(dataset), 10)
        with torch.no_grad():
            views = model(batch["video"].flatten(0, 1)).reshape(4, 6, 10)
        expected = views.mean(1) if method == "logits" else views.softmax(-1).mean(1)
        torch.testing.assert_close(result.scores[:4], expected, atol=1e-5, rtol=1e-5)
        assert result.top1 == pytest.approx((result.scores.argmax(1) == result.labels).double().mean().item())
        assert result.confusion.sum() == len(dataset)


def test_average_views_logits_vs_softmax_differ_when_one_view_is_overconfident():
    scores = torch.tensor([[[10.0, 0.0], [0.0, 2.0], [0.0, 2.0]]])  # one confident view for class 0
    assert average_views(scores, "logits").argmax(1).item() == 0
    assert average_views(scores, "softmax").argmax(1).item() == 1
    with pytest.raises(ValueError, match="not one of logits, softmax"):
        average_views(scores, "median")


def test_cli_test_command_writes_metrics_predictions_and_confusion(smoke_data, tmp_path):
    result = run("smoke", smoke(smoke_data, tmp_path, "train.test=false"))
    from timesformer_lite.cli import main

    out = tmp_path / "report"
    assert main(["test", "--checkpoint", str(result.best_checkpoint), "--out", str(out), "data.num_crops=3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = (out / "predictions.csv").read_text().splitlines()
    assert metrics["videos"] == len(rows) - 1 == 20
    assert (out / "confusion.png").stat().st_size > 1000


def test_each_rank_resumes_its_own_random_state_and_an_older_checkpoint_its_single_one():
    torch.manual_seed(1)
    first = rng_state()
    torch.manual_seed(2)
    second = rng_state()
    for saved, rank, expected in [([first, second], 1, second), ([first, second], 0, first), (first, 1, first)]:
        set_rng_state(saved, rank)
        assert torch.equal(torch.get_rng_state(), expected["torch"])
