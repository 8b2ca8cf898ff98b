"""A ``distributed.Client`` from the CLUSTER options, and progress-aware compute.

With no option a ``LocalCluster`` sized to the machine is started (one single-threaded worker
process per core: numpy/torch kernels release the GIL poorly and each worker pins its own threads).
``--scheduler-address`` / ``--scheduler-file`` attach to any running scheduler: one started by hand,
by dask-jobqueue on SLURM, or a dask-cuda ``LocalCUDACluster``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdeconv.config.cluster import ClusterConfig
from kdeconv.errors import InputError

__all__ = ["ClusterConfig", "open_client", "compute", "worker_threads", "machine_cores",
           "check_cluster_config", "sigint_ignored", "ctrl_c_not_lost", "tune_malloc", "environment_kept"]


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _quiet_distributed(level: int = logging.WARNING) -> None:
    # The CLI shows one summary line; distributed's INFO chatter would bury it.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.http.proxy", "distributed.worker.state_machine",
                 "distributed.client", "distributed.deploy", "distributed.comm"):
        logging.getLogger(name).setLevel(level)


# ----------------------------------------------------------------------------- worker logs

# A heartbeat in flight while the cluster shuts down fails with a traceback (seen once in a few
# hundred runs); a scheduler really lost mid-run is reported by the client.
_NOISE = ("InputError(", "EnvironmentFault(", "No space left on device", "Disk quota exceeded",
          "Read-only file system", "ended with CancelledError",
          "Failed to communicate with scheduler during heartbeat")


def _drop_handled_errors(record: logging.LogRecord) -> bool:
    """Errors the client reports in one line, and the cancellations of a Ctrl-C, are not logged
    again by the workers (with a traceback)."""
    message = record.getMessage()
    return not any(noise in message for noise in _NOISE)


def quiet_worker_logs() -> None:
    """Install the filter on the worker loggers of this process (idempotent)."""
    for name in ("distributed.worker", "distributed.worker.state_machine", "distributed.core",
                 "distributed.utils"):
        log = logging.getLogger(name)
        if _drop_handled_errors not in log.filters:
            log.addFilter(_drop_handled_errors)


# Dask starts every nanny's worker with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's
# mmap threshold at 128 kB: every chunk-sized numpy or torch buffer is then a fresh mmap whose
# pages fault in on first touch and are unmapped on free. Measured in workers: the model at half
# speed (500 vs 1040 patterns/s at 60x60), generate's mixing 5x slower. Buffers below the mmap
# threshold come from the heap again; up to the trim threshold stays free before going back.
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 64 * 2**20
_malloc_tuned = False


def tune_malloc() -> bool:
    """Let this process reuse heap memory for chunk-sized buffers (glibc's ``mallopt``); False
    where the C library has none (macOS, musl) or refuses. Safe to call again."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    _malloc_tuned = (mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES) == 1
                     and mallopt(m_trim_threshold, TRIM_THRESHOLD_BYTES) == 1)
    return _malloc_tuned


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """Give this process its environment back after starting or stopping a LocalCluster.

    Its nannies run in this process and put Dask's worker environment (MALLOC_TRIM_THRESHOLD_,
    OMP_NUM_THREADS=1, ...) into ``os.environ`` before spawning a worker, and leave it there: a
    process started from here later would inherit it and run torch on one thread at about half
    speed (``tune_malloc``). The workers keep theirs."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        for key, value in before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def _register_worker_setup(client) -> None:
    """On every worker of ``client``, now and later: quiet logs and ``tune_malloc``."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class WorkerSetup(WorkerPlugin):
        name = "kdeconv-worker-setup"

        def setup(self, worker):
            quiet_worker_logs()
            tune_malloc()

    try:
        client.register_plugin(WorkerSetup(), name=WorkerSetup.name)
    except Exception:  # both are about speed and noise: never a reason to fail
        pass


# ----------------------------------------------------------------------------- remote scheduler

def _remote_address(config: ClusterConfig) -> tuple[str, str]:
    """(address, how to name it in messages) from --scheduler-file or --scheduler-address."""
    if config.scheduler_file:
        path = Path(config.scheduler_file)
        if not path.is_file():
            raise InputError(f"scheduler file not found: {path}")
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"scheduler file {path} is not valid JSON ({type(err).__name__}); "
                             "it is written by `dask scheduler --scheduler-file`") from None
        address = info.get("address") if isinstance(info, dict) else None
        if not isinstance(address, str) or not address:
            raise InputError(f"scheduler file {path} has no scheduler address")
        return address, f"the scheduler of {path} ({address})"
    address = config.scheduler_address
    if _host_port(address) is None and not address.startswith(("inproc://", "ucx://", "ws://", "wss://")):
        raise InputError(f"invalid --scheduler-address {address!r}: expected tcp://HOST:PORT")
    return address, f"scheduler {address}"


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a tcp:// or tls:// address (or HOST:PORT), else None."""
    from distributed.comm import get_address_host_port

    if "://" in address and not address.startswith(("tcp://", "tls://")):
        return None
    try:
        host, port = get_address_host_port(address if "://" in address else f"tcp://{address}")
        return str(host), int(port)
    except (ValueError, TypeError):
        return None


def check_cluster_config(config: ClusterConfig | None) -> None:
    """Refuse a malformed --scheduler-address or --scheduler-file at once (no network)."""
    if config is not None and (config.scheduler_file or config.scheduler_address):
        _remote_address(config)


async def _identity(address: str, timeout: float) -> Any:
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout)  # also the comm handshake
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def _probe_scheduler(address: str, label: str, timeout: float) -> None:
    """Check that a Dask scheduler answers at ``address``: the whole handshake is bounded by
    ``timeout`` (a port that accepts TCP but speaks something else must not hang us)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    host_port = _host_port(address)
    if host_port is not None:  # nothing listening: say so at once (distributed would retry)
        try:
            socket.create_connection(host_port, timeout=timeout).close()
        except OSError as err:
            reason = err.strerror or ("timed out" if isinstance(err, TimeoutError) else type(err).__name__)
            raise InputError(f"cannot reach {label}: {reason}") from None
    # In a thread of its own: callers may already run an event loop (Jupyter).
    pool = ThreadPoolExecutor(1, thread_name_prefix="kdeconv-probe")
    future = pool.submit(asyncio.run, asyncio.wait_for(_identity(address, timeout), timeout))
    pool.shutdown(wait=False)
    try:
        reply = future.result(timeout=timeout + 5)
    except (TimeoutError, FutureTimeout):
        raise InputError(f"no Dask scheduler answered at {label} within {timeout:g} s (is it the "
                         "scheduler's address? a dashboard or other port does not answer)") from None
    except ValueError as err:
        raise InputError(f"invalid address for {label}: {' '.join(str(err).split())[:120]}") from None
    except OSError as err:
        text = " ".join(str(err).split())
        if "Timed out" in text or "timed out" in text:
            raise InputError(f"cannot reach {label} within {timeout:g} s") from None
        raise InputError(f"{label} does not speak the Dask protocol ({type(err).__name__})") from None
    except Exception as err:  # a foreign protocol: MemoryError on a giant frame length, ...
        raise InputError(f"{label} does not speak the Dask protocol ({type(err).__name__})") from None
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise InputError(f"{label} is not a Dask scheduler (it answers as {kind or 'something else'})")


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Worker processes started meanwhile inherit "ignore SIGINT": Ctrl-C in a terminal reaches
    every process of the group, and only this one should act on it (cleanly)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ctrl_c_not_lost() -> Iterator[None]:
    """Ctrl-C raises ``KeyboardInterrupt`` even when it lands where Python cannot raise it: in a
    garbage-collector or weakref callback or a finalizer (a LocalCluster's scheduler, run in this
    process, installs distributed's GC diagnosis), Python reports it to ``sys.unraisablehook``
    and the command would run on. Such a Ctrl-C is sent again a moment later. Only where Ctrl-C
    raises already (the main thread, SIGINT not ignored)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    previous = sys.unraisablehook

    def hook(info) -> None:
        if info.exc_type is KeyboardInterrupt:
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        previous(info)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


# Seconds the client and the local cluster get to close after Ctrl-C.
INTERRUPTED_CLOSE_S = 20


@contextlib.contextmanager
def open_client(config: ClusterConfig | None = None, *, echo=None) -> Iterator[Any]:
    """Yield a connected ``distributed.Client``; close what we started on exit.

    A remote scheduler is probed first (bounded by ``connect_timeout``) and must have a worker
    within ``worker_timeout``; a bad address, file or server is an ``InputError``.
    """
    from distributed import Client, LocalCluster

    config = config or ClusterConfig()
    _quiet_distributed()
    if config.scheduler_file or config.scheduler_address:
        address, label = _remote_address(config)
        _probe_scheduler(address, label, config.connect_timeout)
        try:
            client = Client(address, timeout=f"{config.connect_timeout}s")
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"cannot reach {label} within {config.connect_timeout:g} s: "
                             f"{type(err).__name__}") from None
        try:
            _wait_for_workers(client, label, config.worker_timeout)
            _register_worker_setup(client)
            yield client
        except KeyboardInterrupt:
            _quiet_distributed(logging.CRITICAL)
            raise
        finally:
            client.close()
        return

    cores = machine_cores()
    threads = config.threads_per_worker or 1
    workers = config.workers or max(1, cores // threads)
    with sigint_ignored(), environment_kept():
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                               dashboard_address=":0", silence_logs=logging.WARNING)
    client = Client(cluster)
    _register_worker_setup(client)
    if echo is not None:
        echo(f"LocalCluster: {workers} worker(s) x {threads} thread(s); dashboard {client.dashboard_link}")
    interrupted = False
    try:
        yield client
    except KeyboardInterrupt:
        interrupted = True
        _quiet_distributed(logging.CRITICAL)  # the shutdown's warnings are no news after Ctrl-C
        raise
    finally:
        with environment_kept():  # a worker restarted meanwhile set it again
            if interrupted:
                # Ctrl-C reached the workers too: a shutdown waiting on one of them must not keep
                # the interrupted command from exiting
                with contextlib.suppress(Exception):
                    client.close(timeout=INTERRUPTED_CLOSE_S)
                with contextlib.suppress(Exception):
                    cluster.close(timeout=INTERRUPTED_CLOSE_S)
            else:
                client.close()
                cluster.close()


@contextlib.contextmanager
def client_for(client=None, config: ClusterConfig | None = None, *, echo=None) -> Iterator[Any]:
    """``client`` when one is given (left open: it is the caller's), else a client opened from
    ``config`` as ``open_client`` does (and closed after)."""
    if client is not None:
        yield client
        return
    with open_client(config, echo=echo) as opened:
        yield opened


def _wait_for_workers(client, label: str, timeout: float) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        raise InputError(f"{label} has no worker after {timeout:g} s: start workers "
                         "(or allow longer with --worker-timeout)") from None


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
