"""Hugging Face hub repo ids ("facebook/timesformer-base-finetuned-k400") -> a local `save_pretrained` folder.

Only `config.json`, `preprocessor_config.json` and the weights (`model.safetensors`, else `pytorch_model.bin`,
read with `weights_only`) are fetched, one `hf_hub_download` each: no code from a repo is ever downloaded,
imported or run. Everything else is `huggingface_hub`'s: its cache (`HF_HUB_CACHE` / `HF_HOME`, default
`~/.cache/huggingface/hub`), its progress bars (`HF_HUB_DISABLE_PROGRESS_BARS=1` hides them), offline mode
(`HF_HUB_OFFLINE=1`: the cache only), mirrors (`HF_ENDPOINT`) and tokens for private or gated repos (`hf auth login`
or `HF_TOKEN`).

The zoo's two deadlines bound it too (`fetch.Deadlines`): each read waits at most the stall deadline
(`TIMESFORMER_LITE_DOWNLOAD_STALL`, set as huggingface_hub's `HF_HUB_DOWNLOAD_TIMEOUT` and etag timeout for the
call, unless you set those), and the whole call ends at the overall deadline (`TIMESFORMER_LITE_DOWNLOAD_TIMEOUT`)
with one line, whatever huggingface_hub's own retries would do (a stalled hub otherwise takes minutes per file:
it retries the metadata request with a 60 s timeout, five times). The call then runs on in a background thread
until huggingface_hub's own timeouts end it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from .fetch import STALL_ENV, TIMEOUT_ENV, Deadlines
from .io import WeightsError

T = TypeVar("T")

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # the first the repo has is used
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# a missing local file, not a repo: "runs/best.pt" is a path with a typo, not the repo "runs/best.pt"
_FILE_SUFFIXES = (".pt", ".pth", ".pyth", ".bin", ".safetensors", ".pdparams", ".npz", ".json", ".yaml")


def is_repo_id(name: str) -> bool:
    """True for a string shaped like a hub repo id, "org/name" (one slash, no file suffix of a weight file)."""
    return bool(_REPO_ID.fullmatch(name)) and not name.lower().endswith(_FILE_SUFFIXES)


def _hub_error(repo_id: str, revision: str | None, e: Exception) -> WeightsError:
    """One line naming the repo and the fix, for the errors `hf_hub_download` raises."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, RepositoryNotFoundError):
        return WeightsError(
            f"'{repo_id}' is neither a local path nor a Hugging Face repo you can access; check the name, or log in "
            "for a private or gated repo (hf auth login, or set HF_TOKEN)"
        )
    if isinstance(e, RevisionNotFoundError):
        return WeightsError(f"Hugging Face repo '{repo_id}' has no revision {revision!r}; pass a branch, tag or commit")
    if isinstance(e, LocalEntryNotFoundError):
        why = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
        return WeightsError(
            f"'{repo_id}' is not a local path, and Hugging Face repo '{repo_id}' (revision {revision or 'main'}) is "
            f"not in the cache {constants.HF_HUB_CACHE} while {why}; connect once to download it, or pass a local folder"
        )
    if isinstance(e, EntryNotFoundError):
        return WeightsError(f"Hugging Face repo '{repo_id}' has no {CONFIG}: it is not a transformers model repo")
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return WeightsError(f"Hugging Face repo '{repo_id}': {type(e).__name__}: {first}")


class _Late(Exception):
    """The overall deadline passed before the call returned."""


def _before(end: float, call: Callable[[], T]) -> T:
    """`call()` in a daemon thread, waited for until `end` (a `time.monotonic()` value); `_Late` after that."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as e:  # handed to the caller's thread, which raises it
            box["error"] = e

    worker = threading.Thread(target=run, name="timesformer-lite hub download", daemon=True)
    worker.start()
    worker.join(max(end - time.monotonic(), 0.0))
    if worker.is_alive():
        raise _Late
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@contextlib.contextmanager
def _read_timeouts(stall: float) -> Iterator[float]:
    """huggingface_hub's download and etag timeouts at `stall` for this call, unless the user set them; yields the
    etag timeout to pass."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_DOWNLOAD_TIMEOUT
    if "HF_HUB_DOWNLOAD_TIMEOUT" not in os.environ:  # read by huggingface_hub at each download, not only at import
        constants.HF_HUB_DOWNLOAD_TIMEOUT = stall
    try:
        yield constants.HF_HUB_ETAG_TIMEOUT if "HF_HUB_ETAG_TIMEOUT" in os.environ else stall
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = saved


def hub_folder(
    repo_id: str, revision: str | None = None, *, stall: float | None = None, timeout: float | None = None
) -> Path:
    """The snapshot folder of `repo_id` in the hub cache, holding its config and weights (downloaded if needed).

    Args:
        repo_id: "org/name" of a transformers Timesformer (or ViT) model repo.
        revision: a branch, tag or commit hash; None is the default branch.
        stall: seconds each read may wait (default `$TIMESFORMER_LITE_DOWNLOAD_STALL`, else 30).
        timeout: seconds for the whole call (default `$TIMESFORMER_LITE_DOWNLOAD_TIMEOUT`, else 3600).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    limits = Deadlines.resolve(stall, timeout)
    end = time.monotonic() + limits.total

    def get(filename: str, optional: bool = False) -> Path | None:
        try:
            with _read_timeouts(limits.stall) as etag_timeout:
                return Path(
                    _before(
                        end, lambda: hf_hub_download(repo_id, filename, revision=revision, etag_timeout=etag_timeout)
                    )
                )
        except _Late:
            raise WeightsError(
                f"Hugging Face repo '{repo_id}': {filename} did not arrive within the overall deadline of "
                f"{limits.total:g} s ({TIMEOUT_ENV}); the hub is slow or unreachable: try again, or raise "
                f"{TIMEOUT_ENV} (each read waits up to {limits.stall:g} s, {STALL_ENV})"
            ) from None
        except EntryNotFoundError:
            if optional:
                return None
            raise
        except Exception as e:  # huggingface_hub's HTTP, offline and validation errors
            raise _hub_error(repo_id, revision, e) from e

    try:
        folder = get(CONFIG).parent
    except EntryNotFoundError as e:
        raise _hub_error(repo_id, revision, e) from e
    get(PREPROCESSOR, optional=True)  # without it the normalisation is the reference 0.45 / 0.225
    for name in WEIGHTS:
        if get(name, optional=True) is not None:
            return folder
    from huggingface_hub import constants

    where = " in the cache (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else ""
    raise WeightsError(
        f"Hugging Face repo '{repo_id}' has no {' or '.join(WEIGHTS)}{where}; "
        "it is not a transformers model repo this package reads (sharded, or another library's weights)"
    )
