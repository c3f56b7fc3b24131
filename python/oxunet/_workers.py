"""Running one function over many cases in worker processes, with a rich progress bar."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed


def _context():
    # fork is fast and safe here (oxunet's Rust pool rebuilds itself in a child); elsewhere spawn.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def map_cases(
    fn: Callable,
    jobs: Sequence[tuple],
    num_processes: int,
    description: str,
    quiet: bool = False,
) -> list:
    """``[fn(*job) for job in jobs]`` over ``num_processes`` workers, in job order, with progress on stderr.

    A worker that dies (e.g. killed for memory) surfaces as an exception naming the job index,
    instead of hanging.
    """
    results: list = [None] * len(jobs)
    progress = progress_bar(quiet)
    with progress:
        task = progress.add_task(description, total=len(jobs))
        if num_processes <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = fn(*job)
                progress.advance(task)
            return results
        workers = min(num_processes, len(jobs), os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
            futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                progress.advance(task)
    return results


def progress_bar(quiet: bool = False):
    """A rich Progress on stderr (stdout carries results), disabled when ``quiet`` or when stderr
    is not a terminal (logs and pipes get no bar redraws)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=quiet or not sys.stderr.isatty(), transient=False,
    )


def chunked(items: Iterable, n: int) -> list[list]:
    items = list(items)
    return [items[i : i + n] for i in range(0, len(items), n)]
