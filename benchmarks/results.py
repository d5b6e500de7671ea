"""What every benchmark script shares: the RESULTS.md it appends to and the line naming the CPU.

    from results import RESULTS, append_results, cpu_model    # in a script under benchmarks/

The scripts run from a source checkout (`python benchmarks/NAME.py`): Python puts this folder on the
import path, so they import this module by its name.
"""

from __future__ import annotations

import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def append_results(section: str, block: list[str], intro: str = "", path: Path | None = None) -> None:
    """Add `block` (lines) at the end of `section` ("## ...") of RESULTS.md, creating either if missing;
    the other sections stay where they are.

    Args:
        section: the "## ..." heading the block belongs under.
        block: the lines to add (a dated "### ..." heading first, by convention).
        intro: a paragraph put under the heading when the section is new.
        path: the file (default: benchmarks/RESULTS.md).
    """
    path = path or RESULTS
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if section + "\n" not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n" + (f"\n{intro}\n" if intro else "")
    head, _, tail = text.partition(section + "\n")
    nxt = tail.find("\n## ")
    body, rest = (tail[: nxt + 1], tail[nxt + 1 :]) if nxt >= 0 else (tail, "")
    body = body.rstrip("\n") + "\n\n" + "\n".join(block).strip("\n") + "\n"
    path.write_text(head + section + "\n" + body + ("\n" + rest if rest else ""))


README = RESULTS.parent.parent / "README.md"


def block_marks(name: str) -> tuple[str, str]:
    """The comment lines that open and close a README block written from a record."""
    return (
        f"<!-- {name}: written by the script that records it; tests/test_course_facts.py checks it -->",
        f"<!-- /{name} -->",
    )


def read_block(text: str, name: str) -> list[str]:
    """The lines between the marks of block `name` in `text` (a ValueError naming the block when it is missing)."""
    start, end = block_marks(name)
    if start not in text or end not in text.split(start, 1)[1]:
        raise ValueError(f"README block '{name}' is missing: add the lines {start!r} and {end!r}")
    inside = text.split(start, 1)[1].split(end, 1)[0].strip("\n")
    return inside.split("\n") if inside else []


def write_block(name: str, lines: list[str], path: Path | None = None) -> None:
    """Replace block `name` of the README (`path`) with `lines`: the sentences a recorded run's numbers go into.

    Args:
        name: the block, as its marks name it (`block_marks`).
        lines: its new lines.
        path: the file (default: README.md).
    """
    path = path or README
    text = path.read_text()
    read_block(text, name)  # both marks are there
    start, end = block_marks(name)
    head, rest = text.split(start, 1)
    path.write_text(head + "\n".join([start, *lines, end]) + rest.split(end, 1)[1])


def cpu_info(key: str) -> str:
    """One field of /proc/cpuinfo for the first CPU ("vendor_id": "GenuineIntel", "model name": ...), ""
    where there is no such file or field."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    return cpu_info("model name") or platform.processor() or platform.machine()
