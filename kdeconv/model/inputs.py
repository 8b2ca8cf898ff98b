"""How raw patterns become network inputs (and training targets). Pure numpy.

The recipe is stored in every checkpoint (``normalization``) so inference applies exactly what
training saw:

- ``method``/``percentiles``: per-pattern stretch to [0, 1] with ``kdeconv.preprocess.normalize``
  (percentile clipping is robust to the few hot pixels of shot noise).
- ``mask``: ``"auto"`` detects patterns that are already circular-masked
  (``kdeconv.preprocess.detect_masked``); for those the statistics come from inside the circle and
  the outputs are zeroed outside it. ``"none"`` ignores masks.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from kdeconv.errors import InputError
from kdeconv.preprocess import circular_mask, detect_masked, normalize

__all__ = ["DEFAULT_NORMALIZATION", "check_normalization", "prepare_inputs", "normalize_like",
           "pattern_mask"]

DEFAULT_NORMALIZATION: dict[str, Any] = {
    "method": "percentile",
    "percentiles": [0.5, 99.5],
    "mask": "auto",
}


def check_normalization(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate a stored normalisation recipe (raises InputError when a checkpoint's is unusable)."""
    if not isinstance(spec, dict):
        raise InputError("checkpoint normalisation recipe is not a mapping")
    out = dict(DEFAULT_NORMALIZATION)
    out.update(spec)
    if out["method"] not in ("minmax", "percentile"):
        raise InputError(f"checkpoint uses unknown normalisation method {out['method']!r}")
    if out["mask"] not in ("auto", "none"):
        raise InputError(f"checkpoint uses unknown mask mode {out['mask']!r}")
    lo, hi = out["percentiles"]
    if not 0 <= lo < hi <= 100:
        raise InputError(f"checkpoint has invalid percentiles {out['percentiles']}")
    out["percentiles"] = [float(lo), float(hi)]
    return out


@lru_cache(maxsize=16)
def pattern_mask(shape: tuple[int, int]) -> np.ndarray:
    """The circular mask for ``shape`` (cached; do not modify it)."""
    return circular_mask(shape)


def _normalize_rows(stack: np.ndarray, masked: np.ndarray, mask: np.ndarray,
                    spec: dict[str, Any]) -> np.ndarray:
    kw = dict(method=spec["method"], percentiles=tuple(spec["percentiles"]))
    out = np.empty(stack.shape, dtype=np.float32)
    if masked.any():
        out[masked] = normalize(stack[masked], mask=mask, smart=True, **kw) * mask
    if (~masked).any():
        out[~masked] = normalize(stack[~masked], mask=None, smart=False, **kw)
    return out


def prepare_inputs(patterns: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(n, sy, sx)`` any real dtype -> (float32 [0, 1] inputs, bool (n,) "was masked")."""
    stack = np.asarray(patterns)
    if stack.ndim != 3:
        raise InputError(f"expected patterns of shape (n, sy, sx), got {stack.shape}")
    stack = np.nan_to_num(stack.astype(np.float32, copy=False))
    mask = pattern_mask(stack.shape[1:])
    if spec["mask"] == "auto" and len(stack):
        masked = detect_masked(stack, mask)
    else:
        masked = np.zeros(len(stack), dtype=bool)
    return _normalize_rows(stack, masked, mask, spec), masked


def normalize_like(patterns: np.ndarray, masked: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Normalise training targets with the same recipe and the mask decision of their mixture."""
    stack = np.nan_to_num(np.asarray(patterns).astype(np.float32, copy=False))
    return _normalize_rows(stack, np.asarray(masked, dtype=bool), pattern_mask(stack.shape[1:]), spec)
