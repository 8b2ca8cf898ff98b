"""Where a model runs: one rule for ``train``, ``separate`` (in process and on Dask workers) and
``adapt``."""

from __future__ import annotations

from typing import Any

from kdeconv.errors import InputError

__all__ = ["resolve_device", "cuda_available"]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _gpu_of_this_process() -> str:
    """``cuda`` with one visible GPU (dask-cuda pins one per worker); on a multi-GPU host a Dask
    worker takes one by its index, so a plain LocalCluster spreads its workers over the GPUs."""
    import torch

    count = torch.cuda.device_count()
    if count <= 1:
        return "cuda"
    try:
        from distributed import get_worker

        name = get_worker().name
        index = int(name) if str(name).isdigit() else sum(map(ord, str(name)))
    except (ImportError, ValueError):
        index = 0
    return f"cuda:{index % count}"


def resolve_device(device: Any = "auto"):
    """``auto`` -> a GPU when this process sees one, else the CPU; ``cuda`` (or ``cuda:N``) must
    exist. Returns a ``torch.device``; anything else is a one-line ``InputError``."""
    import torch

    name = str(device)
    if name == "auto":
        return torch.device(_gpu_of_this_process() if cuda_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}: use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}: use auto, cpu or cuda")
    if dev.type == "cuda" and not cuda_available():
        raise InputError(f"device {name} was requested but CUDA is not available on this machine "
                         "(use device cpu or auto)")
    if name == "cuda":
        return torch.device(_gpu_of_this_process())
    return dev
