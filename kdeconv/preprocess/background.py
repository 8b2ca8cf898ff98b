"""Static and dynamic background removal, as kikuchipy does it, on a stack of patterns.

Pure numpy/scipy kernels on ``(n, sy, sx)`` arrays (kikuchipy maps one pattern at a time with
numba; here the FFT runs over the whole stack at once). They match
``EBSD.remove_static_background`` and ``EBSD.remove_dynamic_background`` (frequency domain,
Connelly Barnes' padded FFT filter) to within float32 rounding.

Each step ends, like kikuchipy, by stretching every pattern to fill an output range. With the
default ``dtype_out=np.float32`` and ``out_range=(0, 1)`` the result is ready for the model.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import irfft2, next_fast_len, rfft2

__all__ = ["remove_static_background", "remove_dynamic_background", "dynamic_background",
           "gaussian_window", "rescale_per_pattern", "output_range"]

_OPERATIONS = ("subtract", "divide")


def output_range(dtype_out, out_range=None) -> tuple[float, float]:
    """kikuchipy's output range: the integer dtype's full range, [-1, 1] for floats, or given."""
    if out_range is not None:
        return float(out_range[0]), float(out_range[1])
    dtype_out = np.dtype(dtype_out)
    if dtype_out.kind in "ui":
        info = np.iinfo(dtype_out)
        return float(info.min), float(info.max)
    return -1.0, 1.0  # skimage's dtype_range for floats


def _as_stack(patterns: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    patterns = np.asarray(patterns)
    if patterns.ndim < 2:
        raise ValueError(f"patterns must be (..., sy, sx), got shape {patterns.shape}")
    return patterns.reshape((-1,) + patterns.shape[-2:]), patterns.shape


def rescale_per_pattern(stack: np.ndarray, omin: float, omax: float) -> np.ndarray:
    """Stretch each pattern of a float32 ``(n, sy, sx)`` stack to [omin, omax] (in place)."""
    imin = stack.min(axis=(1, 2), keepdims=True)
    imax = stack.max(axis=(1, 2), keepdims=True)
    span = imax - imin
    # A flat pattern has no contrast to stretch: map it to omin instead of dividing by zero.
    span[span == 0] = np.inf
    stack -= imin
    stack /= span
    stack *= np.float32(omax - omin)
    stack += np.float32(omin)
    return stack


def _finish(stack: np.ndarray, shape, dtype_out, out_range) -> np.ndarray:
    omin, omax = output_range(dtype_out, out_range)
    stack = rescale_per_pattern(stack, omin, omax)
    # Truncating cast, as kikuchipy's ``astype`` after rescaling.
    return stack.astype(dtype_out, copy=False).reshape(shape)


def remove_static_background(patterns: np.ndarray, static_bg: np.ndarray,
                             operation: str = "subtract", scale_bg: bool = False,
                             dtype_out=np.float32, out_range=(0.0, 1.0)) -> np.ndarray:
    """Subtract (or divide by) one background pattern, then stretch each pattern.

    ``dtype_out=patterns.dtype, out_range=None`` reproduces kikuchipy's defaults.
    """
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got {operation!r}")
    stack, shape = _as_stack(patterns)
    background = np.asarray(static_bg, dtype=np.float32)
    if background.shape != stack.shape[1:]:
        raise ValueError(f"static background {background.shape} does not match patterns {stack.shape[1:]}")
    stack = stack.astype(np.float32)
    if scale_bg:  # background stretched to each pattern's own range
        bmin, bmax = background.min(), background.max()
        unit = (background - bmin) / np.float32(bmax - bmin if bmax > bmin else 1)
        pmin = stack.min(axis=(1, 2), keepdims=True)
        pmax = stack.max(axis=(1, 2), keepdims=True)
        background = unit[None] * (pmax - pmin) + pmin
    if operation == "subtract":
        stack -= background
    else:
        stack /= background
    return _finish(stack, shape, dtype_out, out_range)


def gaussian_window(std: float, truncate: float = 4.0) -> np.ndarray:
    """kikuchipy's Gaussian window for the dynamic background: side int(truncate*std), sum 1."""
    side = int(truncate * std)
    if side < 1:
        raise ValueError(f"std*truncate must be >= 1, got std={std}, truncate={truncate}")
    # scipy.signal.windows.gaussian(side, std), written out: importing scipy.signal costs ~0.6 s.
    n = np.arange(side) - (side - 1) / 2.0
    line = np.exp(-0.5 * (n / std) ** 2)
    window = np.outer(line, line)
    return window / window.sum()


def _pad_stack(stack: np.ndarray, fft_shape, window_shape) -> np.ndarray:
    """Barnes' padding: image top-left, edges extended right/down, wrapped ends filled."""
    n, iy, ix = stack.shape
    wy, wx = window_shape
    fy, fx = fft_shape
    oy, ox = wy - (wy - 1) // 2 - 1, wx - (wx - 1) // 2 - 1
    ey, ex = (wy - 1) // 2, (wx - 1) // 2
    pad = np.zeros((n, fy, fx), dtype=np.float32)
    pad[:, :iy, :ix] = stack
    pad[:, iy:iy + ey, :ix] = stack[:, -1:, :]
    pad[:, :iy, ix:ix + ex] = stack[:, :, -1:]
    if oy:
        pad[:, fy - oy:, :ix] = stack[:, :1, :]
    if ox:
        pad[:, :iy, fx - ox:] = stack[:, :, :1]
    pad[:, iy:iy + ey, ix:ix + ex] = stack[:, -1:, -1:]
    if oy:
        pad[:, fy - oy:, ix:ix + ex] = stack[:, :1, -1:]
    if ox:
        pad[:, iy:iy + ey, fx - ox:] = stack[:, -1:, :1]
    if oy and ox:
        pad[:, fy - oy:, fx - ox:] = stack[:, :1, :1]
    return pad


def dynamic_background(patterns: np.ndarray, std: float | None = None,
                       truncate: float = 4.0) -> np.ndarray:
    """Gaussian-blurred patterns (float32), kikuchipy's frequency-domain filter on a stack."""
    stack, shape = _as_stack(patterns)
    iy, ix = stack.shape[1:]
    std = ix / 8 if std is None else std
    window = gaussian_window(std, truncate)
    wy, wx = window.shape
    fft_shape = (next_fast_len(iy + wy - 1, real=True), next_fast_len(ix + wx - 1, real=True))
    window_pad = np.zeros(fft_shape, dtype=np.float32)
    window_pad[:wy, :wx] = window[::-1, ::-1]
    transfer = rfft2(window_pad)
    padded = _pad_stack(stack.astype(np.float32, copy=False), fft_shape, (wy, wx))
    blurred = irfft2(rfft2(padded, axes=(1, 2)) * transfer, fft_shape, axes=(1, 2))
    ay, ax = (wy - 1) // 2, (wx - 1) // 2
    return np.ascontiguousarray(blurred[:, ay:ay + iy, ax:ax + ix], dtype=np.float32).reshape(shape)


def remove_dynamic_background(patterns: np.ndarray, operation: str = "subtract",
                              std: float | None = None, truncate: float = 4.0,
                              dtype_out=np.float32, out_range=(0.0, 1.0)) -> np.ndarray:
    """Subtract (or divide by) each pattern's own blurred copy, then stretch each pattern.

    ``std`` defaults to the pattern width / 8, as in kikuchipy.
    """
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got {operation!r}")
    stack, shape = _as_stack(patterns)
    stack = stack.astype(np.float32)
    background = dynamic_background(stack, std=std, truncate=truncate)
    if operation == "subtract":
        stack -= background
    else:
        stack /= background
    return _finish(stack, shape, dtype_out, out_range)
