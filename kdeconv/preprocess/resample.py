"""Resampling patterns between a map's size and a model's working size. Pure numpy.

Each axis is a linear map: shrinking averages the input pixels each output pixel covers (area
weights, so an integer factor is exact binning); enlarging interpolates linearly between pixel
centres (half-pixel aligned, edges held). A stack ``(n, sy, sx)`` becomes ``Ry @ X @ Rx.T``,
summed over the few nonzero taps of each row: the same bits on any scheduler, exact for a constant.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from kdeconv.errors import InputError

__all__ = ["resample_matrix", "resample", "working_shape", "WorkingRange", "working_range_of"]


@lru_cache(maxsize=32)
def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` float32 weights taking one axis from ``n_in`` to ``n_out`` pixels."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    if n_in == n_out:
        return np.eye(n_in, dtype=np.float32)
    out = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    if n_out < n_in:  # area: output pixel i covers input [i*scale, (i+1)*scale)
        for i in range(n_out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
                out[i, j] = min(hi, j + 1) - max(lo, j)
        out /= out.sum(axis=1, keepdims=True)
    else:  # linear between pixel centres
        x = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
        left = np.floor(x).astype(int)
        right = np.minimum(left + 1, n_in - 1)
        frac = x - left
        out[np.arange(n_out), left] += 1 - frac
        out[np.arange(n_out), right] += frac
    matrix = out.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


@lru_cache(maxsize=32)
def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """``resample_matrix`` as taps: ``(k, n_out)`` input indices and float32 weights, the
    nonzeros of each row in column order (zero-weight taps pad short rows)."""
    matrix = resample_matrix(n_in, n_out)
    k = int((matrix != 0).sum(axis=1).max())
    index = np.zeros((k, n_out), np.intp)
    weight = np.zeros((k, n_out), np.float32)
    for i, row in enumerate(matrix):
        cols = np.flatnonzero(row)
        index[: len(cols), i] = cols
        weight[: len(cols), i] = row[cols]
    return index, weight


def _along(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    index, weight = _taps(x.shape[axis], n_out)
    shape = [1] * x.ndim
    shape[axis] = n_out
    out = np.take(x, index[0], axis=axis) * weight[0].reshape(shape)
    for idx, w in zip(index[1:], weight[1:]):
        out += np.take(x, idx, axis=axis) * w.reshape(shape)
    return out


def resample(patterns: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Patterns ``(..., sy, sx)`` resampled to ``(..., shape[0], shape[1])``, float32.

    ``Ry @ X @ Rx.T`` summed tap by tap in a fixed order rather than by BLAS, whose kernels and
    thread splits round differently: the same bits in a worker and in a notebook's threads.
    """
    x = np.asarray(patterns, dtype=np.float32)
    sy, sx = x.shape[-2:]
    ty, tx = int(shape[0]), int(shape[1])
    if (sy, sx) == (ty, tx):
        return x
    stack = x.reshape((-1, sy, sx))
    out = _along(_along(stack, 1, ty), 2, tx)
    return out.reshape(x.shape[:-2] + (ty, tx))


class WorkingRange:
    """Pattern sizes a model was trained on: shorter side in ``[low, high]``, ``preferred`` for
    patterns outside it (kept aspect ratio)."""

    def __init__(self, low: int, high: int, preferred: int):
        if not 16 <= low <= preferred <= high:
            raise InputError(f"bad working range: low {low}, preferred {preferred}, high {high}")
        self.low, self.high, self.preferred = int(low), int(high), int(preferred)

    def as_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "preferred": self.preferred}

    def __repr__(self) -> str:
        return f"WorkingRange({self.low}-{self.high}, preferred {self.preferred})"


def working_shape(sig_shape: tuple[int, int], working: WorkingRange | None,
                  size: int | None = None) -> tuple[int, int]:
    """The shape a pattern is given before the model.

    ``size`` (the user's ``--working-size``) sets the shorter side; otherwise a pattern whose
    shorter side lies inside the model's range is left alone and any other is scaled to the
    preferred size. The aspect ratio is kept (rounded to whole pixels).
    """
    sy, sx = int(sig_shape[0]), int(sig_shape[1])
    short = min(sy, sx)
    if size is None:
        if working is None or working.low <= short <= working.high:
            return sy, sx
        size = working.preferred
    if size < 16:
        raise InputError(f"working size {size} is too small (at least 16 px)")
    scale = size / short
    return max(16, int(round(sy * scale))), max(16, int(round(sx * scale)))


# Shorter sides the shipped models were trained on when their checkpoint does not say.
DEFAULT_WORKING = (60, 120, 120)


def working_range_of(meta: dict) -> WorkingRange:
    """A checkpoint's working range: its ``working_range`` record, else the shorter sides of the
    pairs stores it was trained on (preferred: the size of the largest store)."""
    stored = meta.get("working_range")
    if stored:
        return WorkingRange(stored["low"], stored["high"], stored["preferred"])
    stores = ((meta.get("data") or {}).get("stores") or [])
    sides = [(min(s["shape"]), s.get("n", 0)) for s in stores if s.get("shape")]
    if not sides:
        return WorkingRange(*DEFAULT_WORKING)
    shorts = [side for side, _ in sides]
    preferred = max(sides, key=lambda t: t[1])[0]
    return WorkingRange(max(16, min(shorts)), max(shorts), preferred)
