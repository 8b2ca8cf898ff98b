"""One model per worker process, and the device it runs on.

Tasks carry only the checkpoint path and its sha256; the first task on a process loads the model
and later tasks reuse it (a model is tens of MB: it must not travel inside every task).
"""

from __future__ import annotations

import threading
from typing import Any

from kdeconv.errors import InputError

__all__ = ["cached_separator", "load_count", "loaded_models", "tune_malloc"]

_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()
_LOADS = 0


# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap
# threshold at 128 kB: every MB-sized torch buffer is then mmap'ed, page-faulted and unmapped on
# each call, halving the model's speed (measured: 500 vs 1040 patterns/s at 60x60). Restore
# heap reuse for buffers below 16 MB and keep up to 64 MB free before trimming.
_MMAP_THRESHOLD = 16 * 2**20
_TRIM_THRESHOLD = 64 * 2**20
_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Let this process reuse heap memory for model buffers (glibc only; no-op elsewhere)."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, _MMAP_THRESHOLD) == 1 and libc.mallopt(-1, _TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok


def _set_torch_threads(device: str) -> None:
    import torch

    from kdeconv.cluster import machine_cores, worker_threads

    # The worker's thread share, so N workers x T threads never oversubscribe the cores.
    threads = worker_threads(default=machine_cores())
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def cached_separator(checkpoint: str | None, sha256: str, device: str, precision: str = "auto"):
    """The separator for (checkpoint sha256, device, precision) in this process, loaded on first use
    with ``kdeconv.model.load_separator``."""
    global _LOADS
    from kdeconv.model.device import resolve_device

    resolved = str(resolve_device(device))
    key = (sha256, resolved, precision)
    with _LOCK:
        separator = _CACHE.get(key)
        if separator is None:
            tune_malloc()
            _set_torch_threads(resolved)
            import kdeconv.model

            separator = kdeconv.model.load_separator(checkpoint, device=resolved, precision=precision)
            if separator.sha256 != sha256:
                raise InputError(f"checkpoint {checkpoint} changed while separating "
                                 f"(sha256 {separator.sha256[:12]} != {sha256[:12]}): rerun the command")
            _CACHE[key] = separator
            _LOADS += 1
    return separator


def loaded_models() -> list[tuple[str, str, str]]:
    """(sha256, device, precision) of the models cached in this process."""
    with _LOCK:
        return list(_CACHE)


def load_count() -> int:
    """How many models this process has loaded (1 per checkpoint, device and precision is the goal)."""
    return _LOADS
