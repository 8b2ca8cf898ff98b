"""Per-chunk kernel of ``kdeconv separate``: raw patterns in, A, B and weights out.

Pure numpy around any ``separator`` with ``.separate(float32 (n, sy, sx)) -> (A, B, weights)``
(the real one is ``kdeconv.model.Separator``; tests pass a stub). No Dask or Zarr here.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import numpy as np

from kdeconv.errors import InputError
from kdeconv.preprocess import circular_mask, detect_masked
from kdeconv.preprocess.background import (
    background_steps,
    fill_outside_mask,
    remove_dynamic_background,
    remove_static_background,
    rescale_per_pattern,
)
from kdeconv.preprocess.mask import from_screen, screen_shape, window_patterns
from kdeconv.preprocess.resample import resample

__all__ = ["SeparatorLike", "preprocess_patterns", "separate_patterns", "effective_batch_size",
           "runs_on", "to_dtype", "from_dtype", "blank_frames", "MAX_BATCH_PIXELS",
           "CPU_BATCH_BYTES"]


class SeparatorLike(Protocol):
    def separate(self, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def to_dtype(unit: np.ndarray, dtype) -> np.ndarray:
    """Float [0, 1] -> ``dtype``: integers use their full range (rounded), floats stay [0, 1]."""
    dtype = np.dtype(dtype)
    unit = np.clip(unit, 0.0, 1.0)
    if dtype.kind in "ui":
        top = np.iinfo(dtype).max
        return np.rint(unit.astype(np.float64) * top).astype(dtype)
    return unit.astype(dtype)


def from_dtype(patterns: np.ndarray) -> np.ndarray:
    """Inverse of ``to_dtype`` for display and comparisons: float32 in [0, 1]."""
    if patterns.dtype.kind in "ui":
        return patterns.astype(np.float32) / np.float32(np.iinfo(patterns.dtype).max)
    return patterns.astype(np.float32)


def blank_frames(patterns: np.ndarray) -> np.ndarray:
    """True (shape ``patterns.shape[:-2]``) where a pattern holds one value in every pixel: a
    dropped frame or a beam blank. It carries no crystal, so nothing is separated from it."""
    flat = patterns.reshape(patterns.shape[:-2] + (-1,))
    return flat.max(axis=-1) == flat.min(axis=-1)


def preprocess_patterns(patterns: np.ndarray, background: dict[str, Any],
                        static_bg: np.ndarray | None = None,
                        work_shape: tuple[int, int] | None = None,
                        masked: np.ndarray | None = None) -> np.ndarray:
    """Raw ``(n, sy, sx)`` patterns -> background-corrected float32 in [0, 1] per pattern, at
    ``work_shape`` (default: their own shape).

    ``background`` holds the keys of ``kdeconv.config.separate.BackgroundConfig``; its ``mode``
    "processed" skips the static and dynamic removal (the vendor has done them). Patterns are
    resampled first (background removal is linear, so it commutes with resampling up to the
    blur's edges, and it is far cheaper at the working size). ``masked`` (n,) says which
    patterns carry the circular mask, decided at their own size when the caller resamples; a
    caller that gives it has applied the recipe's window already. Otherwise a recipe with
    ``mask: circle`` masks every pattern first (``preprocess.mask.window_patterns``; a round
    screen's square is cut out, so the output is at its size unless ``work_shape`` is given).
    """
    if masked is None:
        patterns = window_patterns(patterns, background)
        masked = detect_masked(patterns, circular_mask(patterns.shape[-2:])) \
            if min(patterns.shape[-2:]) >= 3 else np.zeros(len(patterns), bool)
    stack = patterns.astype(np.float32)
    if work_shape is not None and tuple(work_shape) != stack.shape[-2:]:
        stack = resample(stack, work_shape)
        if static_bg is not None:
            static_bg = resample(static_bg, work_shape)
    static, dynamic = background_steps(background)
    if (static or dynamic) and masked.any() and min(stack.shape[-2:]) >= 3:
        # the blurs of background removal must see the detector's background, not the mask's zeros
        stack[masked] = fill_outside_mask(stack[masked])
    if static:
        if static_bg is None:
            raise ValueError("static background removal needs the background pattern")
        stack = remove_static_background(stack, static_bg, operation=background["static_operation"])
    if dynamic:
        stack = remove_dynamic_background(stack, operation=background["dynamic_operation"],
                                          std=background.get("dynamic_std"))
    if not (static or dynamic):
        # No background step stretched the patterns: do it here so the model always sees [0, 1].
        stack = rescale_per_pattern(stack, 0.0, 1.0)
    if masked.any() and min(stack.shape[-2:]) >= 3:
        # Background removal and resampling fill the dark outside of circular-masked patterns;
        # zero it again so the model still recognises them as masked.
        stack[masked] *= circular_mask(stack.shape[-2:])
    return stack


# Large patterns shrink the batch so one model call holds at most this many pixels (~64 MB of
# float32 input; activations scale with it), whatever size the model was trained on.
MAX_BATCH_PIXELS = 2**24
# The CPU's fastest batch holds about this many bytes of input at the autocast precision
# (2**18 pixels in fp32, 2**19 in bf16): the activations then stay in cache. Measured on a
# 2-core Zen 4, patterns/s at 120x120: fp32 158 (batch 64) -> 222 (16); bf16 341 (64) -> 382
# (32); at 240x240 fp32 34 (16) -> 50 (4), bf16 69 (16) -> 79 (8). Half or twice it is slower.
CPU_BATCH_BYTES = 2**20
_ITEMSIZE = {"fp32": 4, "bf16": 2, "fp16": 2}
# GPUs take big batches (``kdeconv.separate.device.device_batch_size`` probes the card from here).
GPU_BATCH = 256


def effective_batch_size(batch_size: int | None, sig_shape: tuple[int, int], device_type: str = "cpu",
                         precision: str = "fp32") -> int:
    """Patterns per model call: ``batch_size`` when given (at most ``MAX_BATCH_PIXELS`` pixels),
    else the device's own: ``CPU_BATCH_BYTES`` of input at ``precision`` on a CPU, ``GPU_BATCH``
    on a GPU."""
    pixels = int(np.prod(sig_shape))
    if batch_size is None:
        batch_size = (GPU_BATCH if device_type == "cuda"
                      else CPU_BATCH_BYTES // (pixels * _ITEMSIZE.get(precision, 4)))
    return max(1, min(int(batch_size), MAX_BATCH_PIXELS // pixels))


def runs_on(separator) -> tuple[str, str]:
    """(device type, precision) of ``separator``: ("cpu", "fp32") for one without a torch device."""
    return (getattr(getattr(separator, "device", None), "type", "cpu"),
            str(getattr(separator, "precision", "fp32")))


def _takes(separator, name: str) -> bool:
    try:
        return name in inspect.signature(separator.separate).parameters
    except (TypeError, ValueError):
        return False


def separate_patterns(patterns: np.ndarray, separator: SeparatorLike, *, batch_size: int | None,
                      background: dict[str, Any], static_bg: np.ndarray | None = None,
                      out_dtype=None, work_shape: tuple[int, int] | None = None,
                      residual_pass: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Separate a block ``(..., sy, sx)`` of raw patterns in batches of ``batch_size`` (None:
    the device's own, ``effective_batch_size``).

    The model runs at ``work_shape`` (default: the patterns' own shape, or a round screen's
    square that the recipe cuts to); A and B are resampled back and put in place (zero around a
    screen's square). ``residual_pass``: the minority weight from which the model separates B again from the
    residual of C after A (``kdeconv.model.residual_pass``; None, or a separator without the
    option: one pass). Returns A and B shaped like ``patterns`` in ``out_dtype`` (default: the input dtype,
    full range) and weights ``(..., 2)`` float32 with wA >= wB. Blank frames (``blank_frames``)
    are not given to the model: their A and B stay 0 and their weights NaN. A model that returns
    NaN or inf is refused (``InputError``): nothing invented is written.
    """
    nav_shape, sig_shape = patterns.shape[:-2], patterns.shape[-2:]
    if patterns.dtype.kind == "f" and not np.isfinite(patterns).all():
        raise InputError("the map holds NaN or inf values; fix or mask them before separating")
    out_dtype = np.dtype(out_dtype or patterns.dtype)
    stack = patterns.reshape((-1,) + sig_shape)
    n = stack.shape[0]
    seen_shape = screen_shape(sig_shape, background)  # what the window leaves of a pattern
    work_shape = tuple(int(v) for v in (work_shape or seen_shape))
    resampled = work_shape != seen_shape
    native_mask = circular_mask(seen_shape) if min(seen_shape) >= 3 else None
    batch_size = effective_batch_size(batch_size, work_shape, *runs_on(separator))
    model_kw = {"batch_size": batch_size} if _takes(separator, "batch_size") else {}
    if residual_pass is not None and _takes(separator, "residual_pass"):
        model_kw["residual_pass"] = residual_pass
    a_out = np.zeros(stack.shape, dtype=out_dtype)
    b_out = np.zeros(stack.shape, dtype=out_dtype)
    w_out = np.full((n, 2), np.nan, dtype=np.float32)
    kept = np.flatnonzero(~blank_frames(stack))
    # Batches are fixed by (chunk, batch_size), so a rerun feeds the model identical batches.
    for first in range(0, len(kept), batch_size):
        rows = kept[first: first + batch_size]
        raw = window_patterns(stack[rows], background)
        masked = detect_masked(raw, native_mask) if native_mask is not None else np.zeros(len(raw), bool)
        batch = preprocess_patterns(raw, background, static_bg, work_shape, masked)
        a, b, w = separator.separate(batch, **model_kw)
        a, b, w = np.asarray(a), np.asarray(b), np.asarray(w, dtype=np.float32)
        if a.shape != batch.shape or b.shape != batch.shape or w.shape != (len(rows), 2):
            raise RuntimeError(f"separator returned shapes {a.shape}, {b.shape}, {w.shape} "
                               f"for a batch of {batch.shape}")
        if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(w).all()):
            raise InputError("the model returned NaN or inf values: the checkpoint is unusable "
                             "(a diverged training run?)")
        # Keep A dominant even if a separator does not promise it.
        swap = w[:, 0] < w[:, 1]
        if swap.any():
            a, b, w = a.copy(), b.copy(), w.copy()
            a[swap], b[swap] = b[swap], a[swap]
            w[swap] = w[swap][:, ::-1]
        if resampled:
            a, b = resample(a, seen_shape), resample(b, seen_shape)
            if masked.any():
                a[masked] *= native_mask
                b[masked] *= native_mask
        a, b = from_screen(a, sig_shape, background), from_screen(b, sig_shape, background)
        a_out[rows] = to_dtype(a, out_dtype)
        b_out[rows] = to_dtype(b, out_dtype)
        w_out[rows] = w
    return (a_out.reshape(patterns.shape), b_out.reshape(patterns.shape),
            w_out.reshape(nav_shape + (2,)))
