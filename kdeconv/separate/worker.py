"""One model per worker process, and the device it runs on.

Tasks carry only the checkpoint path and its sha256; the first task on a process loads the model
and later tasks reuse it (a model is tens of MB: it must not travel inside every task).
"""

from __future__ import annotations

import threading
from typing import Any

from kdeconv.errors import InputError

__all__ = ["cached_separator", "load_count", "loaded_models", "resolved_precision"]

_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()
_LOADS = 0


def _set_torch_threads() -> None:
    """Inside a Dask worker: torch gets the worker's thread share, so N workers x T threads never
    oversubscribe the cores. Elsewhere (this process's own threads) the caller decides."""
    import torch

    from kdeconv.cluster import worker_threads

    threads = worker_threads(default=0)
    if threads == 0:  # not in a worker
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def cached_separator(checkpoint: str | None, sha256: str, device: str, precision: str = "auto"):
    """The separator for (checkpoint sha256, device, precision) in this process, loaded on first use
    with ``kdeconv.model.load_separator``."""
    global _LOADS
    from kdeconv.cluster import tune_malloc
    from kdeconv.model.device import resolve_device

    resolved = str(resolve_device(device))
    key = (sha256, resolved, precision)
    with _LOCK:
        separator = _CACHE.get(key)
        if separator is None:
            tune_malloc()  # workers of a cluster kdeconv did not start
            import kdeconv.model

            separator = kdeconv.model.load_separator(checkpoint, device=resolved, precision=precision)
            if separator.sha256 != sha256:
                raise InputError(f"checkpoint {checkpoint} changed while separating "
                                 f"(sha256 {separator.sha256[:12]} != {sha256[:12]}): rerun the command")
            _CACHE[key] = separator
            _LOADS += 1
    # Every call, not only the first: a model loaded outside a task (``client.run``, a warm-up)
    # saw no worker, and torch kept every core.
    _set_torch_threads()
    return separator


def resolved_precision(device: str, precision: str) -> str:
    """What ``precision`` means for inference on this process's ``device``: fp32, bf16 or fp16."""
    from kdeconv.model.device import resolve_device
    from kdeconv.model.precision import precision_name, resolve_precision

    return precision_name(resolve_precision(precision, resolve_device(device)))


def loaded_models() -> list[tuple[str, str, str]]:
    """(sha256, device, precision) of the models cached in this process."""
    with _LOCK:
        return list(_CACHE)


def load_count() -> int:
    """How many models this process has loaded (1 per checkpoint, device and precision is the goal)."""
    return _LOADS
