"""Mixed precision for training and inference: which autocast dtype a device gets.

``auto`` picks bf16 where the hardware runs it natively: CUDA GPUs with bf16 (Ampere and later;
older GPUs get fp16 with a gradient scaler when training), and CPUs with AMX tiles, where oneDNN
runs bf16 convolutions and matmuls on them. For inference, CPUs with AVX512-BF16 (AMD Zen 4,
Intel Cooper Lake) get bf16 too: on a 2-core Zen 4 EPYC the shipped model separates 292 patterns/s
at 120x120 in bf16 against 140 in fp32. Training there stays fp32: a bf16 step of the shipped
model gains little (1.15x the samples/s of fp32 at batch 16 with torch 2.13; an earlier torch
took 2.3x as long), and adapt's measured figures are fp32. Without any native support bf16 is
emulated, and ``auto`` is fp32.
Weights, optimiser state, BatchNorm and the loss stay fp32 (autocast only lowers the
convolutions, matmuls and attention).
"""

from __future__ import annotations

import torch

from kdeconv.errors import InputError

__all__ = ["PRECISIONS", "cpu_has_native_bf16", "cpu_infers_in_bf16", "resolve_precision",
           "autocast", "precision_name"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AMX tiles (e.g. Intel Sapphire Rapids), where bf16 is faster than fp32."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_amx_tile_supported",)
    try:
        return any(bool(getattr(cpu, name)()) for name in probes if hasattr(cpu, name))
    except RuntimeError:  # probe unavailable in this build
        return False


def cpu_infers_in_bf16() -> bool:
    """True on CPUs whose forward pass is faster in bf16: AMX tiles, or AVX512-BF16 dot products."""
    if cpu_has_native_bf16():
        return True
    try:
        return bool(torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # probe unavailable in this build
        return False


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (for a training step when ``training``,
    else for inference); None means plain fp32."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return _DTYPES[precision]
    if precision == "fp16":
        raise InputError("fp16 is for CUDA only; on the CPU use bf16 or fp32")
    if precision == "auto":
        native = cpu_has_native_bf16() if training else cpu_infers_in_bf16()
        return torch.bfloat16 if native else None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device`` (a no-op context for fp32)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
