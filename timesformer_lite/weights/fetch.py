"""HTTP downloads you can trust: resumed only onto the same file, checked before they are kept, bounded in time.

    path = fetch(url, Path("cache/TimeSformer_k400.pdparams"))   # sha256= when the source publishes one

The body goes to `<file>.part`; beside it `<file>.part.json` records the URL and the server's validator (a strong
ETag, else Last-Modified). A later call resumes with `Range` only together with `If-Range: <validator>`, so a
server whose file has changed answers with the whole new file, and a `.part` without a validator (not provably a
prefix of this file) is started again. A `206` must start exactly where the `.part` ends (its `Content-Range`),
else the download starts again; a `200` to a ranged request replaces the `.part`; a body shorter than its
`Content-Length` is resumed (up to `retries` times, while each try makes progress) and otherwise an error.

A complete body is checked against its published sha256 (or a prefix of it, torch.hub's `name-<digits>.pth`) or,
where none is published, against what its format must be (`filecheck.check_complete`: an HTML page or a truncated
file is refused). Only then is it renamed into place, with its sha256 recorded beside it in `<file>.sha256`
(`sha256sum -c` reads it), so that `cache_problem` can verify the file on every later use.

Two deadlines end a download with one line (keyword arguments, else the environment, else the default):
the stall deadline, seconds without a byte (`TIMESFORMER_LITE_DOWNLOAD_STALL`, 30), and the overall deadline,
seconds for the whole download (`TIMESFORMER_LITE_DOWNLOAD_TIMEOUT`, 3600). The hub path uses the same two.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from .filecheck import NotThatFile, check_complete
from .io import WeightsError

STALL_ENV = "TIMESFORMER_LITE_DOWNLOAD_STALL"
TIMEOUT_ENV = "TIMESFORMER_LITE_DOWNLOAD_TIMEOUT"
DEFAULT_STALL, DEFAULT_TIMEOUT = 30.0, 3600.0
CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _seconds(value: float | None, env: str, keyword: str, default: float) -> float:
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise WeightsError(f"{env}={raw!r} is not a number of seconds; set it to e.g. {default:g}") from None
        keyword = env
    if not (value > 0 and not math.isnan(value)):
        raise WeightsError(f"{keyword}={value!r}: a deadline is a number of seconds > 0 (default {default:g})")
    return float(value)


@dataclass(frozen=True)
class Deadlines:
    """How long a download may wait for a byte (`stall`) and take in all (`total`), in seconds.

    Args:
        stall: seconds without a byte before a download ends (`TIMESFORMER_LITE_DOWNLOAD_STALL`, default 30).
        total: seconds for one whole download (`TIMESFORMER_LITE_DOWNLOAD_TIMEOUT`, default 3600).
    """

    stall: float
    total: float

    @classmethod
    def resolve(cls, stall: float | None = None, total: float | None = None) -> Deadlines:
        """The keyword values where given, else the environment's, else the defaults; bad values are one line."""
        return cls(
            _seconds(stall, STALL_ENV, "stall", DEFAULT_STALL), _seconds(total, TIMEOUT_ENV, "timeout", DEFAULT_TIMEOUT)
        )


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def record_digest(dest: Path, digest: str) -> None:
    """Write `<dest>.sha256` in `sha256sum`'s format."""
    _sidecar(dest).write_text(f"{digest}  {dest.name}\n")


def forget(dest: Path) -> None:
    """Remove a cached file and its recorded digest."""
    dest.unlink(missing_ok=True)
    _sidecar(dest).unlink(missing_ok=True)


def cache_problem(dest: Path, sha256: str | None = None, *, record: bool = True) -> str | None:
    """Why the downloaded file `dest` must not be used, or None when it verifies.

    It verifies when its sha256 matches the published one (`sha256`, or a prefix of it), else the one recorded
    when it was downloaded. A file with neither (put there by hand) must pass `check_complete`; its digest is
    then recorded (`record=True`), so that later uses compare against it.
    """
    digest = sha256_of(dest)
    if sha256 is not None:
        return None if digest.startswith(sha256.lower()) else f"has sha256 {digest}, not the published {sha256}"
    try:
        known = _sidecar(dest).read_text().split()[0]
    except (OSError, IndexError):
        known = None
    if known is not None:
        return None if digest == known else f"has sha256 {digest}, not the {known} recorded when it was downloaded"
    try:
        check_complete(dest, dest.name)
    except NotThatFile as e:
        return f"is {e}"
    if record:
        with contextlib.suppress(PermissionError):  # a read-only cache: checked by format now, and again next time
            record_digest(dest, digest)
    return None


class _WrongRange(Exception):
    """A 206 whose Content-Range does not start where the `.part` ends."""


class _Overdue(Exception):
    """The overall deadline passed during a transfer."""


class _Partial:
    """`<file>.part` and `<file>.part.json`: the bytes so far, and the URL and validator they came from."""

    def __init__(self, dest: Path) -> None:
        self.path = dest.with_name(dest.name + ".part")
        self.meta = dest.with_name(dest.name + ".part.json")
        self.total: int | None = None  # the full size the server announced

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def validator(self, url: str) -> str | None:
        """The validator to resume with; without one the bytes here are dropped (not provably this file's)."""
        try:
            meta = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            meta = {}
        if self.size() and isinstance(meta, dict) and meta.get("url") == url and meta.get("validator"):
            return str(meta["validator"])
        self.discard()
        return None

    def begin(self, url: str, validator: str | None) -> None:
        """Start the file again from its first byte, remembering where its bytes come from."""
        self.path.write_bytes(b"")
        if validator is None:
            self.meta.unlink(missing_ok=True)
        else:
            self.meta.write_text(json.dumps({"url": url, "validator": validator}))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def _validator(resp: http.client.HTTPResponse) -> str | None:
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range takes only a strong validator
        return etag
    return resp.headers.get("Last-Modified")


def _body_range(resp: http.client.HTTPResponse, have: int) -> tuple[int, int | None, int | None]:
    """Where this body starts in the file, the file's full size, and the body's length (None: unknown)."""
    raw = resp.headers.get("Content-Length", "")
    length = int(raw) if raw.strip().isdigit() else None
    if resp.status != 206:  # the whole file, also when a range was asked for (changed file, or no range support)
        return 0, length, length
    match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
    if match is None or int(match[1]) != have:
        raise _WrongRange(resp.headers.get("Content-Range"))
    return have, None if match[3] == "*" else int(match[3]), length


def _attempt(url: str, part: _Partial, limits: Deadlines, end: float, bar: tqdm) -> bool:
    """One request for the bytes `part` lacks; True when the file is complete."""
    if time.monotonic() > end:
        raise _Overdue
    validator = part.validator(url)
    have = part.size() if validator else 0
    headers = {"User-Agent": "timesformer-lite"} | ({"Range": f"bytes={have}-", "If-Range": validator} if have else {})
    with urlopen(Request(url, headers=headers), timeout=min(limits.stall, max(end - time.monotonic(), 0.1))) as resp:
        start, part.total, length = _body_range(resp, have)
        if start == 0:
            part.begin(url, _validator(resp))
        bar.reset(total=part.total)
        bar.update(start)
        received = 0
        with open(part.path, "ab") as f:
            while chunk := resp.read1(CHUNK):  # read1: returns what has come, so the deadlines are checked often
                f.write(chunk)
                bar.update(len(chunk))
                received += len(chunk)
                if time.monotonic() > end:
                    raise _Overdue
    if length is not None and received < length:
        return False  # the body ended before its Content-Length: resume, or fail
    return part.total is None or part.size() >= part.total


def _transfer(url: str, part: _Partial, limits: Deadlines, end: float, bar: tqdm, retries: int) -> str | None:
    """Requests until the file is complete; None then, else why it stopped. Raises on errors that retrying
    cannot fix."""
    why = "the connection closed early"
    for _ in range(retries + 1):
        before = part.size()
        try:
            if _attempt(url, part, limits, end, bar):
                return None
        except _WrongRange as e:
            part.discard()  # bytes at another offset cannot follow ours: start again from the first byte
            why = f"the server sent bytes at another offset (Content-Range {e})"
            continue
        except HTTPError as e:
            if e.code == 416 and before:  # the range is past the server's file: this .part is not its prefix
                part.discard()
                continue
            raise
        except (URLError, TimeoutError):  # no connection, or the stall deadline: the caller's one line, no retry
            raise
        except (OSError, http.client.HTTPException) as e:  # the connection broke during the transfer
            why = str(e) or type(e).__name__
        if part.size() == before:  # no progress: trying again would not help
            break
    return why


def _keep(part: _Partial, dest: Path, sha256: str | None, url: str, what: str) -> str:
    """Check the complete `.part` (digest, else format), rename it to `dest`, record its sha256; return it."""
    digest = sha256_of(part.path)
    if sha256 is not None and not digest.startswith(sha256.lower()):
        part.discard()
        raise WeightsError(
            f"{what}: the downloaded file has sha256 {digest}, not the published {sha256}; it was deleted "
            f"(damaged on the way, or changed on the server at {url}): download it again"
        )
    if sha256 is None:
        try:
            check_complete(part.path, dest.name)
        except NotThatFile as e:
            part.discard()
            raise WeightsError(
                f"{what}: {url} sent {e}, not a {dest.suffix} file; nothing was saved. Check that the URL serves "
                "the file itself (or that the zoo mirror does), then download again"
            ) from None
    os.replace(part.path, dest)
    part.meta.unlink(missing_ok=True)
    record_digest(dest, digest)
    return digest


def _stopped(e: BaseException, url: str, part: _Partial, dest: Path, limits: Deadlines, what: str) -> WeightsError:
    """The one line for a download that ended without a file."""
    if isinstance(e, HTTPError):
        return WeightsError(f"downloading {what} failed: {url} answered HTTP {e.code} {e.reason}")
    again = "run the same command again" + (" to resume" if part.meta.exists() else "")
    if isinstance(e, _Overdue):
        return WeightsError(
            f"downloading {what} passed its overall deadline of {limits.total:g} s ({TIMEOUT_ENV}) at "
            f"{part.size()} of {part.total or '?'} bytes; {again}, or raise {TIMEOUT_ENV}"
        )
    reason = e.reason if isinstance(e, URLError) else e
    if isinstance(reason, TimeoutError):
        return WeightsError(
            f"downloading {what}: no byte from {url} for {limits.stall:g} s (the stall deadline, {STALL_ENV}); "
            f"{again}, or raise {STALL_ENV}"
        )
    return WeightsError(
        f"cannot download {what}: {url} is unreachable ({reason}); connect to the internet, or download "
        f"the file elsewhere and put it at '{dest}'"
    )


def fetch(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    progress: bool | None = None,
    what: str = "",
    retries: int = 3,
    stall: float | None = None,
    timeout: float | None = None,
) -> Path:
    """Download `url` to `dest` through `dest.part`: resumed onto the same file only, checked, then renamed.

    Args:
        url: http(s) URL.
        dest: the final path; its folder is created.
        sha256: the published digest (or a prefix of it); a mismatch deletes the file and raises. None checks the
            file's format instead and prints the digest, so it can be pinned.
        progress: a tqdm bar on stderr; None shows one when stderr is a terminal.
        what: names the download in messages (default: the file name).
        retries: further requests after a transfer stops early, each resuming where the last one ended.
        stall: seconds without a byte before giving up (default `$TIMESFORMER_LITE_DOWNLOAD_STALL`, else 30).
        timeout: seconds for the whole download (default `$TIMESFORMER_LITE_DOWNLOAD_TIMEOUT`, else 3600).
    """
    limits = Deadlines.resolve(stall, timeout)
    what = what or dest.name
    progress = sys.stderr.isatty() if progress is None else progress
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _Partial(dest)
    end = time.monotonic() + limits.total
    bar = tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, file=sys.stderr)
    try:
        with bar:
            why = _transfer(url, part, limits, end, bar, retries)
    except (HTTPError, URLError, TimeoutError, _Overdue) as e:
        raise _stopped(e, url, part, dest, limits, what) from None
    if why is not None:
        size, resumable = part.size(), part.meta.exists()
        if not resumable:  # without a validator these bytes cannot be resumed onto: keep nothing
            part.discard()
        again = f"to resume from '{part.path}'" if resumable else "(the server offers no resume: it starts over)"
        raise WeightsError(
            f"downloading {what} stopped at {size} of {part.total or '?'} bytes ({why}); "
            f"nothing was saved as '{dest.name}': run the same command again {again}"
        )
    digest = _keep(part, dest, sha256, url, what)
    if sha256 is None:
        print(f"{what}: sha256 {digest} (its source publishes none; compare it to pin this file)", file=sys.stderr)
    return dest
