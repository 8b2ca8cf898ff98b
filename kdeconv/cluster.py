"""A ``distributed.Client`` from the CLUSTER options, and progress-aware compute.

With no option a ``LocalCluster`` sized to the machine is started (one single-threaded worker
process per core: numpy/torch kernels release the GIL poorly and each worker pins its own threads).
``--scheduler-address`` / ``--scheduler-file`` attach to any running scheduler: one started by hand,
by dask-jobqueue on SLURM, or a dask-cuda ``LocalCUDACluster``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdeconv.config.cluster import ClusterConfig
from kdeconv.errors import InputError

__all__ = ["ClusterConfig", "open_client", "compute", "worker_threads", "machine_cores"]


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _quiet_distributed() -> None:
    # The CLI shows one summary line; distributed's INFO chatter would bury it.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def open_client(config: ClusterConfig | None = None, *, echo=None) -> Iterator[Any]:
    """Yield a connected ``distributed.Client``; close what we started on exit."""
    from distributed import Client, LocalCluster

    config = config or ClusterConfig()
    _quiet_distributed()
    if config.scheduler_file:
        path = Path(config.scheduler_file)
        if not path.is_file():
            raise InputError(f"scheduler file not found: {path}")
        target: dict[str, Any] = {"scheduler_file": str(path)}
        label = f"scheduler file {path}"
    elif config.scheduler_address:
        target = {"address": config.scheduler_address}
        label = f"scheduler {config.scheduler_address}"
    else:
        target = {}
        label = ""

    if target:
        try:
            client = Client(**target, timeout=f"{config.connect_timeout}s")
        except (OSError, TimeoutError) as err:
            raise InputError(f"cannot reach {label} within {config.connect_timeout:g} s: "
                             f"{type(err).__name__}") from None
        try:
            yield client
        finally:
            client.close()
        return

    cores = machine_cores()
    threads = config.threads_per_worker or 1
    workers = config.workers or max(1, cores // threads)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                           dashboard_address=":0", silence_logs=logging.WARNING)
    client = Client(cluster)
    if echo is not None:
        echo(f"LocalCluster: {workers} worker(s) x {threads} thread(s); dashboard {client.dashboard_link}")
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def worker_threads(default: int = 1) -> int:
    """Threads this process may use for numpy/torch: the Dask worker's share, else ``default``."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return default


def show_progress() -> bool:
    if os.environ.get("KDECONV_PROGRESS") is not None:
        return os.environ["KDECONV_PROGRESS"] not in ("0", "", "false")
    return sys.stderr.isatty()


def compute(client, obj, *, progress: bool | None = None):
    """Compute a dask collection/delayed on ``client``, with a progress bar on a terminal.

    Exceptions raised in tasks (``InputError`` included) are re-raised here unchanged.
    """
    from distributed import progress as dask_progress

    future = client.compute(obj)
    if progress if progress is not None else show_progress():
        dask_progress(future, notebook=False)
        sys.stdout.write("\n")
    return future.result()


class Timer:
    """``with Timer() as t: ...; t.seconds``; used for the one-line summaries."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def summary_line(what: str, count: int, seconds: float, unit: str = "patterns") -> str:
    rate = count / seconds if seconds > 0 else float("inf")
    return f"{what}: {count} {unit} in {seconds:.1f} s ({rate:.1f} {unit}/s)"
