"""The zoo: published TimeSformer / ViT checkpoints that live outside the Hugging Face hub, by name.

    model = tl.load_pretrained("paddlevideo/timesformer-k400")    # downloaded once, then read from the cache
    path = download("facebookresearch/timesformer-k600")           # the file itself
    timesformer-lite download --list

Each `ZooEntry` records where the file is, what `load_pretrained` must be told about it (the format and the
architecture fields the file does not hold), the class list of its dataset, and the accuracy its source
reports. `timesformer-lite/toy-divided` is the package's own toy model, served from the package, never
downloaded. The others download to `~/.cache/timesformer_lite/<name>/<file>` (or `$TIMESFORMER_LITE_CACHE`)
through `fetch`: resumed onto the same file only, checked against the published sha256 where one is known and
otherwise against what its format must be, then renamed, its sha256 recorded beside it. Every later call verifies
the cached file against that digest (no network); a file that fails is removed, with a line saying so, and
downloaded again. `$TIMESFORMER_LITE_ZOO_MIRROR` replaces the zoo's hosts: the file is then fetched from
`<mirror>/<name>/<file>`, the layout of the cache, so a copy of a cache folder on any static HTTP server is a
mirror.

Digests: only the timm file's name carries one (the first 8 hex digits of its sha256, torch.hub's convention);
PaddleVideo, PaddleClas and the facebookresearch README publish none for their files, and no public model card,
release page or LFS pointer holding these exact files was found (docs/weights.md).

Class lists (`CLASS_LISTS`) are package data in `weights/classes/`, one name per line in label order:
kinetics400 (PaddleVideo's `Kinetics-400_label_list.txt`: the sorted class names, the order of the official,
PaddleVideo and Hugging Face k400 heads), kinetics600 (the sorted Kinetics-600 names), ssv2 (the label ids of
Something-Something-v2's `something-something-v2-labels.json`, as in mmaction2's `tools/data/sthv2/label_map.txt`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..assets import toy_history, toy_model_path
from .fetch import Deadlines, _sidecar, cache_problem, fetch, forget
from .io import WeightsError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

CACHE_ENV = "TIMESFORMER_LITE_CACHE"
MIRROR_ENV = "TIMESFORMER_LITE_ZOO_MIRROR"
CLASSES_DIR = Path(__file__).parent / "classes"
CLASS_LISTS = {"kinetics400": 400, "kinetics600": 600, "ssv2": 174}  # name -> number of classes


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint.

    Args:
        name: what `load_pretrained` / `download` take, "org/model".
        url: where the file is downloaded from; "" for a file shipped with the package.
        source: the format for `load_pretrained(source=...)`.
        overrides: `ModelConfig` fields the file does not record (heads, scheme, frames for an ImageNet init).
        classes: the `CLASS_LISTS` name of its head's labels, or None (ImageNet heads are replaced on load).
        accuracy: the accuracy and test protocol its source reports.
        sha256: the published digest, or its first hex digits (torch.hub's `name-<digits>.pth` convention);
            None where the source publishes none (the digest is printed after the first download).
        about: one line on what it is.
        shipped: the file, for an entry shipped with the package (never downloaded, never cached).
    """

    name: str
    url: str
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)
    classes: str | None = None
    accuracy: str = ""
    sha256: str | None = None
    about: str = ""
    shipped: Path | None = None

    @property
    def filename(self) -> str:
        return self.shipped.name if self.shipped else self.url.split("?")[0].rsplit("/", 1)[-1]


def _official(name: str, file: str, dataset: str, top: str, about: str) -> ZooEntry:
    """An entry of the facebookresearch/TimeSformer README model zoo (Dropbox; `dl=1` serves the file itself)."""
    return ZooEntry(
        name=f"facebookresearch/{name}",
        url=f"https://www.dropbox.com/s/{file}?dl=1",
        source="official",
        overrides={"num_heads": 12},
        classes=dataset,
        accuracy=f"{top} (1 clip x 3 crops; facebookresearch/TimeSformer README)",
        about=about,
    )


def _toy() -> ZooEntry:
    """The toy model shipped with the package (`make run`'s), with the test numbers of the run that made it."""
    run = toy_history()
    return ZooEntry(
        name="timesformer-lite/toy-divided",
        url="",
        source="ours",
        accuracy=f"toy motions test top-1 {run['test_top1']:.1%}, within pairs {run['test_within_pair']:.1%} "
        f"(multi-view test protocol; {run['date']})",
        about="the course's toy model: divided space-time, 8 frames at 32, 10 toy motions (a start for fine-tuning)",
        shipped=toy_model_path(),
    )


_INIT = {"num_heads": 12, "attention_type": "divided_space_time", "num_frames": 8}  # the reference recipe's video model

ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        _toy(),
        ZooEntry(
            name="paddlevideo/timesformer-k400",
            url="https://videotag.bj.bcebos.com/PaddleVideo-release2.2/TimeSformer_k400.pdparams",
            source="paddle",
            overrides={"num_heads": 12},
            classes="kinetics400",
            accuracy="K400 top-1 77.08 (1 clip x 3 crops, 8x224; PaddleVideo model zoo, 77.29 in later revisions)",
            about="PaddleVideo TimeSformer, divided space-time, 8 frames at 224 (the reference system)",
        ),
        ZooEntry(
            name="paddlevideo/vit-base-patch16-224",
            url="https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/ViT_base_patch16_224_pretrained.pdparams",
            source="paddle",
            overrides=_INIT,
            about="PaddleClas ViT-B/16 (ImageNet-21k -> 1k): PaddleVideo's initialisation, inflated on load",
        ),
        ZooEntry(
            name="timm/jx-vit-base-p16-224",
            url="https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/jx_vit_base_p16_224-80ecf9dd.pth",
            source="timm",
            overrides=_INIT,
            sha256="80ecf9dd",  # the file name's torch.hub hash prefix
            about="timm ViT-B/16 (Google JAX, ImageNet-21k -> 1k): the official code's initialisation, inflated on load",
        ),
        _official("timesformer-k400", "g5t24we9gl5yk88/TimeSformer_divST_8x32_224_K400.pyth", "kinetics400",
                  "K400 top-1 77.9, top-5 93.2", "TimeSformer, 8 frames at 224"),
        _official("timesformer-hr-k400", "6f0x172lpqy3oxt/TimeSformer_divST_16x16_448_K400.pyth", "kinetics400",
                  "K400 top-1 79.6, top-5 94.0", "TimeSformer-HR, 16 frames at 448"),
        _official("timesformer-l-k400", "r1iuxahif3sgimo/TimeSformer_divST_96x4_224_K400.pyth", "kinetics400",
                  "K400 top-1 80.6, top-5 94.7", "TimeSformer-L, 96 frames at 224"),
        _official("timesformer-k600", "4h2qt41m2z3aqrb/TimeSformer_divST_8x32_224_K600.pyth", "kinetics600",
                  "K600 top-1 79.1, top-5 94.4", "TimeSformer, 8 frames at 224"),
        _official("timesformer-hr-k600", "ft1e92g2vhvxecv/TimeSformer_divST_16x16_448_K600.pyth", "kinetics600",
                  "K600 top-1 81.8, top-5 95.8", "TimeSformer-HR, 16 frames at 448"),
        _official("timesformer-l-k600", "857rx6xeclxfhdg/TimeSformer_divST_96x4_224_K600.pyth", "kinetics600",
                  "K600 top-1 82.2, top-5 95.6", "TimeSformer-L, 96 frames at 224"),
        _official("timesformer-ssv2", "tybhuml57y24wpm/TimeSformer_divST_8_224_SSv2.pyth", "ssv2",
                  "SSv2 top-1 59.1, top-5 85.6", "TimeSformer, 8 frames at 224"),
        _official("timesformer-hr-ssv2", "9t68uzk8w2fpfnv/TimeSformer_divST_16_448_SSv2.pyth", "ssv2",
                  "SSv2 top-1 61.8, top-5 86.9", "TimeSformer-HR, 16 frames at 448"),
        _official("timesformer-l-ssv2", "3f1rm2al8mhprwa/TimeSformer_divST_64_224_SSv2.pyth", "ssv2",
                  "SSv2 top-1 62.0, top-5 87.5", "TimeSformer-L, 64 frames at 224"),
    ]
}  # fmt: skip


def class_list(classes: str | Path | list[str]) -> list[str]:
    """Class names in label order from a `CLASS_LISTS` name ("kinetics400", "kinetics600", "ssv2"), a text file
    with one name per line, or a list (returned as a copy)."""
    if isinstance(classes, list):
        return list(classes)
    path = CLASSES_DIR / f"{classes}.txt" if str(classes) in CLASS_LISTS else Path(classes)
    if not path.is_file():
        raise WeightsError(
            f"classes={str(classes)!r} is neither a class list ({', '.join(CLASS_LISTS)}) nor a text file of names"
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def cache_dir() -> Path:
    """Where zoo downloads go: `$TIMESFORMER_LITE_CACHE`, else `~/.cache/timesformer_lite`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "timesformer_lite").expanduser()


def entry(name: str) -> ZooEntry:
    """The zoo entry called `name`; the error lists the names there are."""
    if name not in ZOO:
        raise WeightsError(f"no zoo entry {name!r}; the zoo has {', '.join(ZOO)} (timesformer-lite download --list)")
    return ZOO[name]


def url_of(e: ZooEntry) -> str:
    """Where `e` is downloaded from: its URL, or `$TIMESFORMER_LITE_ZOO_MIRROR/<name>/<file>` when that is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror or e.shipped is not None:
        return e.url
    if not mirror.startswith(("http://", "https://")):
        raise WeightsError(
            f"{MIRROR_ENV}={mirror!r} is not an http(s) URL; set it to a server laid out like the cache "
            "(<mirror>/<name>/<file>), e.g. https://mirror.example/timesformer_lite, or unset it"
        )
    return f"{mirror.rstrip('/')}/{e.name}/{e.filename}"


def cache_state(e: ZooEntry) -> str:
    """What `download --list` says of `e`'s file: in the package, downloaded and verified, damaged, or ""."""
    if e.shipped is not None:
        return "in the package"
    dest = cache_dir() / e.name / e.filename
    if not dest.is_file():
        return ""
    problem = cache_problem(dest, e.sha256, record=False)
    return "downloaded, verified" if problem is None else f"downloaded, but it {problem}: the next use fetches it again"


def download(
    name: str,
    dir: str | Path | None = None,
    progress: bool | None = None,
    *,
    stall: float | None = None,
    timeout: float | None = None,
) -> Path:
    """The local file of zoo entry `name`, verified; downloaded first if it is not there or fails verification.

    A cached file is verified on every call (its sha256 against the published one, else the one recorded when it
    was downloaded); one that fails is removed, with a line on stderr saying so, and downloaded again.

    Args:
        name: a `ZOO` key, e.g. "paddlevideo/timesformer-k400".
        dir: the folder for the file; default `cache_dir() / name`.
        progress: show a progress bar (tqdm, on stderr); None shows one when stderr is a terminal.
        stall: seconds without a byte before the download ends (default `$TIMESFORMER_LITE_DOWNLOAD_STALL`, else 30).
        timeout: seconds for the whole download (default `$TIMESFORMER_LITE_DOWNLOAD_TIMEOUT`, else 3600).

    Returns:
        The path of the complete, verified file.
    """
    e = entry(name)
    if e.shipped is not None:  # in the package: nothing to download; --dir asks for a copy
        if dir is None:
            return e.shipped
        Path(dir).mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(e.shipped, Path(dir) / e.filename))
    url = url_of(e)
    Deadlines.resolve(stall, timeout)  # a bad setting is reported before anything is read
    dest = (Path(dir) if dir is not None else cache_dir() / name) / e.filename
    if dest.is_file() and (e.sha256 or _sidecar(dest).is_file()) and cache_problem(dest, e.sha256) is None:
        return dest  # a digest to compare against, and it matches: no lock, so DDP ranks verify at once
    with _exclusive(dest):  # DDP ranks loading the same name: one repairs or downloads, the others then find it
        if dest.is_file():
            problem = cache_problem(dest, e.sha256)
            if problem is None:
                return dest
            forget(dest)
            print(f"{name}: the cached file '{dest}' {problem}; removed it, downloading it again", file=sys.stderr)
        return fetch(url, dest, e.sha256, progress=progress, what=name, stall=stall, timeout=timeout)


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """Hold an advisory lock on `dest.lock` (POSIX `flock`; no lock where there is none, e.g. Windows, or where the
    folder is read-only: a shared cache that nobody downloads into)."""
    if dest.is_file() and not os.access(dest.parent, os.W_OK):  # nobody can replace the file: nothing to lock
        yield
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_name(dest.name + ".lock"), "w") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield
