"""Per-pattern intensity normalisation to float32 [0, 1], plus light crop and denoise.

"Smart" normalisation computes the statistics only inside the active mask, so the zeros of a
pre-masked pattern (or the dark corners outside the phosphor) do not set the black level.
"""

from __future__ import annotations

import numpy as np

from kdeconv.errors import InputError
from kdeconv.preprocess.mask import pixels_in

__all__ = ["normalize", "normalize_limits", "crop", "denoise"]

METHODS = ("minmax", "percentile")


def normalize_limits(patterns: np.ndarray, mask: np.ndarray | None = None, method: str = "minmax",
                     smart: bool = True, percentiles: tuple[float, float] = (0.5, 99.5)
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pattern ``(lo, hi)`` as float64 arrays of shape (n,), for a ``(n, sy, sx)`` stack."""
    if method not in METHODS:
        raise InputError(f"unknown normalisation method {method!r} (use one of {', '.join(METHODS)})")
    stack = np.asarray(patterns)
    if smart and mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != stack.shape[-2:]:
            raise InputError(f"mask shape {mask.shape} does not match patterns {stack.shape[-2:]}")
        values = pixels_in(stack, mask)
    else:
        values = stack.reshape(len(stack), -1)
    if method == "minmax":
        return values.min(axis=1).astype(np.float64), values.max(axis=1).astype(np.float64)
    lo, hi = np.percentile(values, percentiles, axis=1)
    return lo, hi


def normalize(patterns: np.ndarray, mask: np.ndarray | None = None, method: str = "minmax",
              smart: bool = True, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Stretch each pattern to float32 [0, 1]: ``clip((p - lo) / (hi - lo), 0, 1)``.

    ``lo, hi`` are the min/max (``method="minmax"``) or the given percentiles
    (``"percentile"``) of each pattern, taken inside ``mask`` when ``smart`` and a mask is
    given, else over all pixels. A flat pattern (hi == lo) becomes all zeros. Accepts
    ``(n, sy, sx)`` or one ``(sy, sx)`` pattern.
    """
    arr = np.asarray(patterns)
    single = arr.ndim == 2
    stack = arr.reshape((-1,) + arr.shape[-2:])
    lo, hi = normalize_limits(stack, mask, method, smart, percentiles)
    span = hi - lo
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    # float32 arithmetic: the stretch is exact to ~1e-7, far below one uint16 step (1.5e-5).
    out = stack.astype(np.float32, copy=True)
    out -= lo.astype(np.float32)[:, None, None]
    out *= scale.astype(np.float32)[:, None, None]
    np.clip(out, 0.0, 1.0, out=out)
    return out[0] if single else out


def crop(patterns: np.ndarray, margins: tuple[int, int, int, int]) -> np.ndarray:
    """Remove ``(top, bottom, left, right)`` pixels from each pattern of ``(..., sy, sx)``."""
    top, bottom, left, right = (int(m) for m in margins)
    sy, sx = np.shape(patterns)[-2:]
    if min(top, bottom, left, right) < 0 or top + bottom >= sy or left + right >= sx:
        raise InputError(f"crop {list(margins)} does not fit a {sy}x{sx} pattern")
    return np.asarray(patterns)[..., top:sy - bottom, left:sx - right]


def denoise(patterns: np.ndarray, sigma: float) -> np.ndarray:
    """Light Gaussian denoise (per pattern, no mixing across the stack); sigma 0 is a no-op."""
    if sigma <= 0:
        return np.asarray(patterns, dtype=np.float32)
    from scipy.ndimage import gaussian_filter

    arr = np.asarray(patterns, dtype=np.float32)
    sig = (0,) * (arr.ndim - 2) + (sigma, sigma)
    return gaussian_filter(arr, sigma=sig, mode="nearest")
