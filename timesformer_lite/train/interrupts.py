"""Ctrl-C (SIGINT) held back while a checkpoint is written, and delivered once the write is done."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then deliver it.

    For checkpoint writes: interrupted inside `torch.save`, whose C++ writer calls back into the Python file,
    the process aborted ("write to closed file" from the writer's destructor) instead of stopping cleanly.
    A no-op outside the main thread, where Python cannot set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # once, to the handler that was there: Python's raises
            # KeyboardInterrupt; where SIGINT was ignored (a background job) it stays ignored
