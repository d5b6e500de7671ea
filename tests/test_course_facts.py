"""The numbers the course states stay in step with what makes them: presets, records of runs, the code itself.

Notebooks, the README, docs/toy_motions.md and the preset comments quote clip counts, classes and frame sizes in
prose; those are not computed, so nothing else notices when a preset changes (notebook 00 once said 12,000 clips
where the preset made 11,000). Every count of clips they state must be one the smoke or toy preset really makes.
Numbers about runs (accuracies, times) are written into the README from their records by the scripts that record
them, and checked here against those records; line counts, noise figures and encoding measurements are checked
against what they count or compute.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import tomllib
from bench_scripts import BENCH, bench_module
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import timesformer_lite as tl
from timesformer_lite.data import TOY_CLASSES
from timesformer_lite.data.toy import split_sizes

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
TOY_TEXTS = [REPO / "docs" / "toy_motions.md", REPO / "timesformer_lite" / "configs" / "toy.yaml"]
CLIPS = re.compile(r"(?<![\w.])(\d[\d,]*)[ -](?:short |training |train |test |validation |val )?clips?\b")
# counts that are not toy dataset sizes: views per video ("2 clips per video", "1 clip x 3 crops", "10 clips" of the
# official protocol), learning-rate batches ("lr 0.005 per 64 clips"), frame sizes ("an 8000 x 8000 clip") and the
# classes of other datasets ("12 training clips each")
NOT_DATASET = re.compile(r"clips? (per video|x |each)|reports \d+ clips|per \d+ clips|\d x \d+ clip")


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


# ---- numbers about runs: read from the record they come from (issue 20) ----------------------------------------


def test_the_readme_states_each_recorded_run_as_its_record_says():
    """The README's sentences about Table 1, the toy lesson, the shipped toy model and the CPU speed suite are
    written from their records by the scripts that record them (`--record`); a record changed by hand, or prose
    edited past its record, fails."""
    results, readme = bench_module("results"), (REPO / "README.md").read_text()
    table1, lesson, ship = bench_module("table1"), bench_module("toy_lesson"), bench_module("ship_toy_model")
    speed = bench_module("bench_model")
    from timesformer_lite.assets import toy_history, toy_model_path

    expected = {
        "table1": table1.readme_lines(json.loads(table1.RECORDED.read_text())),
        "toy_lesson": lesson.readme_lines(json.loads(lesson.RECORDED.read_text())),
        "toy_model": ship.readme_lines(toy_history(), toy_model_path().stat().st_size),
        "speed_cpu": speed.readme_lines(json.loads(speed.RECORDED.read_text())),
    }
    for name, lines in expected.items():
        assert results.read_block(readme, name) == lines, f"README block '{name}' differs from its record"


def test_the_hand_written_loop_has_as_many_lines_as_notebook_06_says():
    nb = nbformat.read(REPO / "notebooks" / "06_train_on_toy_motions.ipynb", as_version=4)
    code = next(c.source for c in nb.cells if c.cell_type == "code" and "for epoch in range(2):" in c.source)
    lines = code.split("for epoch in range(2):", 1)[1].splitlines()[1:]
    loop = 1 + len(list(itertools.takewhile(lambda line: line.startswith(" "), lines)))
    stated = [
        int(n) for n in re.findall(r"loop (?:you can write |written by hand )?in (\d+) lines", text(nb_path("06")))
    ]
    stated += [int(n) for n in re.findall(r"by hand in (\d+) lines", text(nb_path("06")))]
    assert stated and set(stated) == {loop}, (stated, loop)


def nb_path(number: str) -> Path:
    return next(p for p in NOTEBOOKS if p.name.startswith(number + "_"))


def test_stated_coin_flip_spreads_are_computed_from_the_stated_clip_counts():
    """'A coin flip over N clips has a standard deviation of X points': X = 100 sqrt(0.25 / N), to the digit."""
    found = 0
    for path in [*NOTEBOOKS, REPO / "README.md", *TOY_TEXTS]:
        body = re.sub(r"\s+", " ", text(path))  # a sentence may break across lines
        for n, x in re.findall(r"sqrt\(0\.5 x 0\.5 / (\d+)\) = ([\d.]+) points", body) + re.findall(
            r"coin flip over (\d+) clips has a standard deviation of ([\d.]+) points", body
        ):
            assert float(x) == round(100 * (0.25 / int(n)) ** 0.5, 1), (path.name, n, x)
            found += 1
    assert found >= 2


def test_the_docs_state_the_toy_encoding_as_it_measures(tmp_path):
    """docs/toy_motions.md's PSNR and kB per clip of the current encoder, measured on 60 clips."""
    import numpy as np

    from timesformer_lite.data import read_frames
    from timesformer_lite.data.toy import clip_rng, make_clip, write_mp4

    psnr, size = [], []
    for label in range(10):
        for index in range(6):
            raw = make_clip(label, clip_rng(0, "test", label, index))
            write_mp4(tmp_path / "c.mp4", raw)
            mse = ((read_frames(tmp_path / "c.mp4", range(8)).astype(float) - raw) ** 2).mean()
            psnr.append(10 * np.log10(255.0**2 / mse))
            size.append((tmp_path / "c.mp4").stat().st_size)
    doc = text(TOY_TEXTS[0])
    assert f"({np.mean(psnr):.1f} dB PSNR against the raw frames at every frame position)" in doc, np.mean(psnr)
    assert f"costs {np.mean(size) / 1e3:.1f} kB per clip" in doc, np.mean(size)


def test_the_course_tables_list_every_notebook():
    """Notebook 00's table of what the course builds (every notebook after it) and the README's course table name
    every numbered notebook."""
    course = [p.name.split("_")[0] for p in NOTEBOOKS[1:]]
    intro, readme = text(nb_path("00")), (REPO / "README.md").read_text()
    assert [n for n in course if not re.search(rf"^\| {n} ", intro, re.M)] == []
    assert [p.name for p in NOTEBOOKS if f"(notebooks/{p.name})" not in readme] == []


def test_make_lab_installs_every_package_a_notebook_imports():
    """A fresh clone's `make lab` installs `.[notebooks]`: every module a notebook or a solution imports comes from
    it, from what it requires in turn, the standard library or benchmarks/ (notebook 09 once imported onnxruntime,
    which only `.[export]` installed)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["notebooks"]]
    installed = {"timesformer-lite"}
    while wanted:  # what `pip install .[notebooks]` brings in: the requirements and theirs, without extras
        req = wanted.pop()
        name = canonicalize_name(req.name)
        if name in installed or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        installed.add(name)
        wanted += [Requirement(r) for r in importlib.metadata.requires(req.name) or []]
    providers = importlib.metadata.packages_distributions()
    local = {p.stem for p in BENCH.glob("*.py")}
    sources = [*NOTEBOOKS, *(REPO / "notebooks" / "solutions").glob("*.py")]
    missing = set()
    for path in sources:
        code = (
            path.read_text()
            if path.suffix == ".py"
            else "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        )
        for module in re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", code, re.M):
            if module in sys.stdlib_module_names or module in local or module == "timesformer_lite":
                continue
            if not {canonicalize_name(d) for d in providers.get(module, [module])} & installed:
                missing.add(f"{path.name}: {module}")
    assert not missing, f"not installed by .[notebooks]: {sorted(missing)}"
