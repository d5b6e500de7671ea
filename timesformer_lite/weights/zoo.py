"""The zoo: published TimeSformer / ViT checkpoints that live outside the Hugging Face hub, by name.

    model = tl.load_pretrained("paddlevideo/timesformer-k400")    # downloaded once, then read from the cache
    path = download("facebookresearch/timesformer-k600")           # the file itself
    timesformer-lite download --list

Each `ZooEntry` records where the file is, what `load_pretrained` must be told about it (the format and the
architecture fields the file does not hold), the class list of its dataset, and the accuracy its source
reports. Downloads go to `~/.cache/timesformer_lite/<name>/<file>` (or `$TIMESFORMER_LITE_CACHE`): written
to `<file>.part`, resumed with an HTTP Range request after an interruption, checked against the sha256 where
one is known, then renamed. A later call finds the file and touches no network.

Class lists (`CLASS_LISTS`) are package data in `weights/classes/`, one name per line in label order:
kinetics400 (PaddleVideo's `Kinetics-400_label_list.txt`: the sorted class names, the order of the official,
PaddleVideo and Hugging Face k400 heads), kinetics600 (the sorted Kinetics-600 names), ssv2 (the label ids of
Something-Something-v2's `something-something-v2-labels.json`, as in mmaction2's `tools/data/sthv2/label_map.txt`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from .io import WeightsError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

CACHE_ENV = "TIMESFORMER_LITE_CACHE"
CLASSES_DIR = Path(__file__).parent / "classes"
CLASS_LISTS = {"kinetics400": 400, "kinetics600": 600, "ssv2": 174}  # name -> number of classes


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint.

    Args:
        name: what `load_pretrained` / `download` take, "org/model".
        url: where the file is downloaded from.
        source: the format for `load_pretrained(source=...)`.
        overrides: `ModelConfig` fields the file does not record (heads, scheme, frames for an ImageNet init).
        classes: the `CLASS_LISTS` name of its head's labels, or None (ImageNet heads are replaced on load).
        accuracy: the accuracy and test protocol its source reports.
        sha256: the published digest, or its first hex digits (torch.hub's `name-<digits>.pth` convention);
            None where the source publishes none (the digest is printed after the first download).
        about: one line on what it is.
    """

    name: str
    url: str
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)
    classes: str | None = None
    accuracy: str = ""
    sha256: str | None = None
    about: str = ""

    @property
    def filename(self) -> str:
        return self.url.split("?")[0].rsplit("/", 1)[-1]


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


_INIT = {"num_heads": 12, "attention_type": "divided_space_time", "num_frames": 8}  # the reference recipe's video model

ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
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


def download(name: str, dir: str | Path | None = None, progress: bool | None = None) -> Path:
    """The local file of zoo entry `name`, downloaded first if it is not there yet.

    Args:
        name: a `ZOO` key, e.g. "paddlevideo/timesformer-k400".
        dir: the folder for the file; default `cache_dir() / name`.
        progress: show a progress bar (tqdm, on stderr); None shows one when stderr is a terminal.

    Returns:
        The path of the complete, verified file.
    """
    e = entry(name)
    dest = (Path(dir) if dir is not None else cache_dir() / name) / e.filename
    if dest.is_file():
        return dest
    with _exclusive(dest):  # DDP ranks loading the same name: one downloads, the others then find the file
        if dest.is_file():
            return dest
        return fetch(e.url, dest, e.sha256, progress=progress, what=name)


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """Hold an advisory lock on `dest.lock` (POSIX `flock`; no lock where there is none, e.g. Windows)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_name(dest.name + ".lock"), "w") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _transfer(url: str, part: Path, bar_desc: str, progress: bool) -> tuple[int, int | None]:
    """One request for the bytes `part` lacks (a Range request when it has some), appended to it.

    Returns:
        The size of `part` afterwards and the full size the server announced (None when it did not).
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "timesformer-lite"} | ({"Range": f"bytes={have}-"} if have else {})
    with urlopen(Request(url, headers=headers), timeout=60) as resp:
        if have and resp.status != 206:  # the server ignored the Range header: start again
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(desc=bar_desc, total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                 disable=not progress, file=sys.stderr) as bar,
        ):  # fmt: skip
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    return part.stat().st_size, total


def fetch(
    url: str, dest: Path, sha256: str | None = None, *, progress: bool | None = None, what: str = "", retries: int = 3
) -> Path:
    """Download `url` to `dest` through `dest.part`: resumed after interruptions, verified, then renamed.

    Args:
        url: http(s) URL.
        dest: the final path; its folder is created.
        sha256: the expected digest (or a prefix of it); a mismatch deletes the file and raises.
            None prints the digest once the file is complete, so it can be pinned.
        progress: a tqdm bar on stderr; None shows one when stderr is a terminal.
        what: names the download in messages (default: the file name).
        retries: further requests after a transfer stops early, each resuming where the last one ended.
    """
    what = what or dest.name
    progress = sys.stderr.isatty() if progress is None else progress
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    size, total, error = 0, None, None
    for _ in range(retries + 1):
        before = part.stat().st_size if part.exists() else 0
        try:
            size, total = _transfer(url, part, dest.name, progress)
            error = None
        except HTTPError as e:
            if e.code == 416 and before:  # the partial file is not a prefix of the server's: start again
                part.unlink()
                continue
            raise WeightsError(f"downloading {what} failed: {url} answered HTTP {e.code} {e.reason}") from e
        except URLError as e:  # no connection at all: DNS, refused, unreachable
            raise WeightsError(
                f"cannot download {what}: {url} is unreachable ({e.reason}); connect to the internet, or download "
                f"the file elsewhere and put it at '{dest}'"
            ) from e
        except (OSError, http.client.HTTPException) as e:  # the connection broke during the transfer
            error, size = e, part.stat().st_size if part.exists() else 0
            if size == before:  # no progress: trying again would not help
                break
            continue
        if total is None or size >= total:
            break
    if error is not None or total is not None and size < total:
        raise WeightsError(
            f"downloading {what} stopped at {size} of {total or '?'} bytes ({error or 'connection closed early'}); "
            f"run the same command again to resume from '{part}'"
        )
    digest = sha256_of(part)
    if sha256 is not None and not digest.startswith(sha256.lower()):
        part.unlink()
        raise WeightsError(
            f"{what}: the downloaded file has sha256 {digest}, expected {sha256}; it was deleted (damaged or changed "
            "on the server): download it again"
        )
    os.replace(part, dest)
    if sha256 is None:
        print(f"{what}: sha256 {digest} (its source publishes none; compare it to pin this file)", file=sys.stderr)
    return dest
