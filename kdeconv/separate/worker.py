"""One model per worker process, and the device it runs on.

Tasks carry only the checkpoint path and its sha256; the first task on a process loads the model
and later tasks reuse it (a model is tens of MB: it must not travel inside every task).
"""

from __future__ import annotations

import threading
from typing import Any

from kdeconv.errors import InputError

__all__ = ["resolve_device", "cached_separator", "load_count", "cuda_available"]

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
_LOADS = 0


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when this process sees a GPU, else ``cpu``; ``cuda`` must exist."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise InputError("--device cuda was requested but CUDA is not available "
                         "(use --device cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def _set_torch_threads(device: str) -> None:
    import torch

    from kdeconv.cluster import machine_cores, worker_threads

    # The worker's thread share, so N workers x T threads never oversubscribe the cores.
    threads = worker_threads(default=machine_cores())
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def cached_separator(checkpoint: str | None, sha256: str, device: str, loader=None):
    """The separator for (checkpoint sha256, device) in this process, loaded on first use.

    ``loader(checkpoint, device)`` defaults to ``kdeconv.model.load_separator``.
    """
    global _LOADS
    resolved = resolve_device(device)
    key = (sha256, resolved)
    with _LOCK:
        separator = _CACHE.get(key)
        if separator is None:
            _set_torch_threads(resolved)
            if loader is None:
                from kdeconv.model import load_separator as loader
            separator = loader(checkpoint, device=resolved)
            found = getattr(separator, "sha256", sha256)
            if found != sha256:
                raise InputError(f"checkpoint {checkpoint} changed while separating "
                                 f"(sha256 {found[:12]} != {sha256[:12]}): rerun the command")
            _CACHE[key] = separator
            _LOADS += 1
    return separator


def load_count() -> int:
    """How many models this process has loaded (1 per checkpoint and device is the goal)."""
    return _LOADS
