"""Runs trained at once, for the scripts that train many (table1.py, transfer.py): one mechanism for both.

With more than one job, each run goes to a job process (spawned: no forked torch thread pools) that dies with the
script, as the data loader's pool workers do, so a script killed with -9 leaves no process behind; a run that
fails, or a Ctrl-C, ends the other job processes at once.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch

from timesformer_lite.data.loader import pool_worker_init, usable_cores


def check_jobs(jobs: int) -> None:
    """`jobs` must be 1 to the cores this process may use: each job trains a run on a core of its own."""
    cores = usable_cores()
    if not 1 <= jobs <= cores:
        raise ValueError(
            f"--jobs {jobs} must be 1 to {cores}, the cores this process may use: each job trains one run on "
            "at least one core of its own, so more jobs only share the cores and multiply the memory"
        )


def threads_per_job(jobs: int) -> int:
    """Threads for each of `jobs` runs trained at once: the cores shared out (this process's own with one job)."""
    return torch.get_num_threads() if jobs <= 1 else max(1, usable_cores() // jobs)


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the job processes now (Ctrl-C, a failed run): `shutdown` alone would wait for the runs in progress."""
    for process in list(pool._processes.values()):  # no public way before Python 3.14's terminate_workers()
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _call(fn: Callable, args: tuple, threads: int | None, log: Path | None):
    """`fn(*args)` with `threads` torch threads (None: as they are), its output appended to `log` (None: here)."""
    if threads is not None:
        torch.set_num_threads(threads)
    if log is None:
        return fn(*args)
    with open(log, "a") as f, redirect_stdout(f), redirect_stderr(f):
        return fn(*args)


def run_all(
    fn: Callable,
    work: dict[Hashable, tuple],
    jobs: int,
    finished: Callable[[Hashable, object], None],
    logs: dict[Hashable, Path] | None = None,
) -> None:
    """`fn(*args)` for every `key: args` of `work`, handed out in its order, `jobs` at once (in this process with
    one job, each job process with `threads_per_job(jobs)` threads); `finished(key, result)` as each ends. A run
    whose key is in `logs` writes its output to that file. With jobs > 1, `fn` must be a module-level function
    (it is pickled by name)."""
    logs = logs or {}
    if jobs <= 1:
        for key, args in work.items():
            finished(key, _call(fn, args, None, logs.get(key)))
        return
    threads = threads_per_job(jobs)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=pool_worker_init, initargs=(os.getpid(),))
    try:
        futures = {pool.submit(_call, fn, args, threads, logs.get(key)): key for key, args in work.items()}
        for future in as_completed(futures):
            finished(futures[future], future.result())
    except BaseException:
        _stop(pool)
        del pool  # its queues' semaphores go now, not at exit, where the resource tracker would report them leaked
        gc.collect()
        raise
    pool.shutdown()
