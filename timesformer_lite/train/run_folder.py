"""The run folder (`train.out_dir/train.name`) belongs to one training at a time.

`RunFolder` holds an exclusive lock on the folder's `.lock` file for as long as the run lives (the OS drops it
when the process dies, even by kill -9), and removes the temporary files a killed write left behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class RunFolder:
    """Exclusive use of a run folder for one training; `close()` (or the process ending) releases it.

    Args:
        path: the run folder; created if needed.

    Raises:
        ValueError: another training holds the folder (the message names its process), or the path cannot
            be a folder (a file is in the way) or cannot be written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._lock = open(path / ".lock", "a+")  # noqa: SIM115 (held open for the run's lifetime)
        except (FileExistsError, NotADirectoryError) as e:
            raise ValueError(
                f"run folder '{path}' cannot be created: '{e.filename}' is a file; set train.out_dir or train.name "
                "to a folder"
            ) from e
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise ValueError(
                f"run folder '{path}' is not writable ({e.strerror}); set train.out_dir to a folder you can write"
            ) from e
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            owner = self._lock.read().strip() or "unknown"
            self._lock.close()
            raise ValueError(
                f"run folder '{path}' is in use by another training (process {owner}); wait for it to finish, "
                "or set train.name (or train.out_dir) to another folder"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()
        self.removed = self._remove_leftovers()

    def _remove_leftovers(self) -> list[Path]:
        """Temporary files of writes that were killed (`atomic_write` names them `.<name>.<random>.tmp`): with
        the lock held, no write of another run can be in progress, so every one of them is a leftover."""
        leftovers = sorted(self.path.glob(".*.tmp"))
        for p in leftovers:
            p.unlink(missing_ok=True)
        return leftovers

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
