"""The numbers the course states about the toy dataset stay in step with the presets that make it.

Notebooks, the README, docs/toy_motions.md and the preset comments quote clip counts, classes and frame sizes in
prose; those are not computed, so nothing else notices when a preset changes (notebook 00 once said 12,000 clips
where the preset made 11,000). Every count of clips they state must be one the smoke or toy preset really makes.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import timesformer_lite as tl
from timesformer_lite.data import TOY_CLASSES
from timesformer_lite.data.toy import split_sizes

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
TOY_TEXTS = [REPO / "docs" / "toy_motions.md", REPO / "timesformer_lite" / "configs" / "toy.yaml"]
CLIPS = re.compile(r"(?<![\w.])(\d[\d,]*)[ -](?:short |training |train |test |validation |val )?clips?\b")
# counts that are not dataset sizes: views per video ("2 clips per video", "1 clip x 3 crops", "10 clips" of the
# official protocol) and the reference learning-rate batch ("lr 0.005 per 64 clips")
NOT_DATASET = re.compile(r"clips? (per video|x )|reports \d+ clips|per 64 clips")


def text(path: Path) -> str:
    if path.suffix != ".ipynb":
        return path.read_text()
    nb = nbformat.read(path, as_version=4)
    outputs = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in nb.cells]
    return "\n".join([c.source for c in nb.cells] + outputs)


def stated_counts(body: str):
    """(phrase, number) for every "N clips" the text states about a dataset."""
    for m in CLIPS.finditer(body):
        if not NOT_DATASET.search(body[max(m.start() - 12, 0) : m.end() + 12]):
            yield m.group(0), int(m.group(1).replace(",", ""))


def dataset_counts() -> set[int]:
    """Every clip count the smoke and toy datasets have: per class, per pair, per split, and in all."""
    counts = set()
    for preset in ("smoke", "toy"):
        cfg = tl.load_config(preset)
        sizes = split_sizes(cfg.data.toy_per_class)
        classes = cfg.model.num_classes
        counts |= {n * k for n in sizes.values() for k in (1, 2, classes)}
        counts |= {sizes["val"] + sizes["test"], classes * sum(sizes.values())}
    return counts


def test_the_toy_preset_makes_11000_clips_in_10_classes():
    toy = tl.load_config("toy")
    sizes = split_sizes(toy.data.toy_per_class)
    assert {k: v * toy.model.num_classes for k, v in sizes.items()} == {"train": 10_000, "val": 500, "test": 500}
    assert toy.model.num_classes == len(TOY_CLASSES) == 10
    assert (toy.data.toy_frames, toy.data.toy_size) == (8, 32)


@pytest.mark.parametrize("path", [*NOTEBOOKS, REPO / "README.md", *TOY_TEXTS], ids=lambda p: p.name)
def test_every_stated_clip_count_is_one_a_preset_makes(path: Path):
    body, allowed = text(path), dataset_counts()
    stated = list(stated_counts(body))
    assert stated or path.suffix != ".md" or path.name == "README.md"
    wrong = [phrase for phrase, n in stated if n not in allowed]
    assert not wrong, f"{path.name} states {wrong}; the presets make {sorted(allowed)}"


def test_notebook_00_and_the_docs_state_the_toy_split_sizes():
    toy = tl.load_config("toy")
    n = {k: v * toy.model.num_classes for k, v in split_sizes(toy.data.toy_per_class).items()}
    expected = f"{sum(n.values()):,} clips ({n['train']:,} train, {n['val']:,} validation, {n['test']:,} test)"
    assert expected in text(REPO / "notebooks" / "00_setup_and_first_look.ipynb")
    doc = text(REPO / "docs" / "toy_motions.md")
    assert (
        f"makes {n['train']:,} train, {n['val']:,} val and {n['test']:,} test clips: {sum(n.values()):,} in all" in doc
    )
    smoke = tl.load_config("smoke")
    s = {k: v * smoke.model.num_classes for k, v in split_sizes(smoke.data.toy_per_class).items()}
    assert f"makes {s['train']} / {s['val']} / {s['test']}" in doc


@pytest.mark.parametrize(
    "path", [REPO / "notebooks" / "00_setup_and_first_look.ipynb", TOY_TEXTS[0]], ids=lambda p: p.name
)
def test_stated_class_counts_and_frame_sizes_match_the_toy_preset(path: Path):
    toy, body = tl.load_config("toy"), text(path)
    classes = [int(c) for c in re.findall(r"(\d+) classes", body)]
    pairs = [int(c) for c in re.findall(r"(\d+) (?:order-reversed |time-reversed )?pairs", body)]
    assert classes and set(classes) == {toy.model.num_classes}, classes
    assert set(pairs) <= {toy.model.num_classes // 2}, pairs
    frames = re.findall(r"(\d+) frames of (\d+) ?x ?(\d+)", body)
    assert all(
        (int(t), int(h), int(w)) == (toy.data.toy_frames, toy.data.toy_size, toy.data.toy_size) for t, h, w in frames
    )
