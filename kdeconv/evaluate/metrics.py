"""Pixel metrics per pattern: pure numpy kernels on (n, sy, sx) arrays.

Every metric compares patterns after per-pattern min-max scaling to [0, 1] (inside the mask when one
is given), because a separator's output and the truth may use different intensity ranges (uint16 full
range vs simulated float). NCC is scale-invariant anyway; PSNR and SSIM need the common range.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from kdeconv.preprocess.mask import pixels_in

__all__ = ["minmax01", "ncc", "psnr", "ssim", "best_ordering", "pair_metrics", "weight_error",
           "weight_calibration", "slice_rows"]

_EPS = 1e-12


def slice_rows(pattern_shape, itemsize: int = 8, mb: float = 64.0, most: int = 4096) -> int:
    """Patterns per slice so that one slice of ``itemsize``-byte values is about ``mb`` MB: the
    evaluation kernels hold a few copies of a slice, so memory follows the pattern size, not
    the map (a 30x30 map of 480x480 px patterns is 0.8 GB per float32 copy)."""
    per_pattern = int(np.prod(pattern_shape)) * itemsize
    return int(max(1, min(most, mb * 2**20 // max(per_pattern, 1))))


def _as3d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 2 else x


def _mask_or_all(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    return np.ones(shape, bool) if mask is None else np.asarray(mask, bool)


def minmax01(patterns: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Scale each pattern to [0, 1] using its min/max inside ``mask``; flat patterns become 0."""
    x = _as3d(patterns)
    m = _mask_or_all(mask, x.shape[-2:])
    inside = pixels_in(x, m)
    lo = inside.min(axis=1)[:, None, None]
    span = inside.max(axis=1)[:, None, None] - lo
    out = np.where(span > _EPS, (x - lo) / np.where(span > _EPS, span, 1.0), 0.0)
    return np.where(m, np.clip(out, 0.0, 1.0), 0.0)


def ncc(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Zero-mean normalised cross-correlation per pattern, in [-1, 1]; 0 when either is flat."""
    p, t = _as3d(pred), _as3d(truth)
    m = _mask_or_all(mask, p.shape[-2:])
    p = pixels_in(p, m)
    t = pixels_in(t, m)
    p = p - p.mean(axis=1, keepdims=True)
    t = t - t.mean(axis=1, keepdims=True)
    denom = np.sqrt((p * p).sum(axis=1) * (t * t).sum(axis=1))
    num = (p * t).sum(axis=1)
    return np.where(denom > _EPS, num / np.where(denom > _EPS, denom, 1.0), 0.0)


def psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None,
         cap_db: float = 100.0) -> np.ndarray:
    """PSNR in dB of min-max scaled patterns (data range 1); identical patterns give ``cap_db``."""
    m = _mask_or_all(mask, np.shape(pred)[-2:])
    p, t = minmax01(pred, m), minmax01(truth, m)
    mse = (pixels_in(p - t, m) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(1.0 / np.maximum(mse, 10.0 ** (-cap_db / 10.0)))
    return np.minimum(db, cap_db)


def ssim(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None,
         sigma: float = 1.5) -> np.ndarray:
    """Mean SSIM (Wang et al. 2004, Gaussian window) of min-max scaled patterns, per pattern."""
    m = _mask_or_all(mask, np.shape(pred)[-2:])
    x, y = minmax01(pred, m), minmax01(truth, m)
    c1, c2 = 0.01**2, 0.03**2
    blur = (lambda a: gaussian_filter(a, sigma=(0, sigma, sigma), mode="reflect", truncate=3.5))
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return pixels_in(smap, m).mean(axis=1)


def best_ordering(pred_a, pred_b, true_a, true_b, mask=None) -> np.ndarray:
    """Per pattern, True where (pred_a, pred_b) matches (true_b, true_a) better than straight.

    "Better" is the larger sum of the two NCCs, so a separator that returns the constituents in
    the other order is not penalised.
    """
    straight = ncc(pred_a, true_a, mask) + ncc(pred_b, true_b, mask)
    swapped = ncc(pred_a, true_b, mask) + ncc(pred_b, true_a, mask)
    return swapped > straight


def pair_metrics(pred_a, pred_b, true_a, true_b, mask=None, swapped=None) -> dict[str, np.ndarray]:
    """NCC, PSNR and SSIM of both constituents in the best ordering, per pattern.

    Returns arrays of length n: ``ncc_a``, ``ncc_b``, ``psnr_a`` ... and ``swapped`` (bool), where
    ``_a`` refers to the truth's A.
    """
    pa, pb, ta, tb = (_as3d(x) for x in (pred_a, pred_b, true_a, true_b))
    # The four NCCs decide the ordering and are reused as the reported NCCs.
    aa, bb, ab, ba = ncc(pa, ta, mask), ncc(pb, tb, mask), ncc(pa, tb, mask), ncc(pb, ta, mask)
    if swapped is None:
        swapped = (ab + ba) > (aa + bb)
    swapped = np.asarray(swapped, bool)
    sw = swapped[:, None, None]
    match_a = np.where(sw, pb, pa)  # the prediction paired with truth A
    match_b = np.where(sw, pa, pb)
    out = {"swapped": swapped, "ncc_a": np.where(swapped, ba, aa), "ncc_b": np.where(swapped, ab, bb)}
    for name, fn in (("psnr", psnr), ("ssim", ssim)):
        out[f"{name}_a"] = fn(match_a, ta, mask)
        out[f"{name}_b"] = fn(match_b, tb, mask)
    return out


def weight_error(pred_weights: np.ndarray, true_weights: np.ndarray,
                 swapped: np.ndarray | None = None) -> np.ndarray:
    """|wA_pred - wA_true| per pattern (n,), with the predicted columns swapped where ``swapped``."""
    pw = np.asarray(pred_weights, np.float64).reshape(-1, 2)
    tw = np.asarray(true_weights, np.float64).reshape(-1, 2)
    if swapped is not None:
        pw = np.where(np.asarray(swapped, bool)[:, None], pw[:, ::-1], pw)
    return np.abs(pw[:, 0] - tw[:, 0])


def weight_calibration(true_weights: np.ndarray, pred_weights: np.ndarray, bins, pure_below: float = 0.05,
                       tolerance: float = 0.05) -> dict:
    """Median predicted minority weight against the true one, per true-minority bin.

    Bins are ``[lo, hi)`` (the last one closed at 0.5) plus ``pure`` (true minority below
    ``pure_below``). Each row: ``n``, ``true_median``, ``pred_median``, ``error`` (pred - true).
    ``max_abs_error`` is over the mixed bins with patterns; ``calibrated``: it is at most
    ``tolerance``.
    """
    true_min = np.asarray(true_weights, np.float64).reshape(-1, 2).min(axis=1)
    pred_min = np.asarray(pred_weights, np.float64).reshape(-1, 2).min(axis=1)
    rows: dict = {}

    def row(sel):
        if not sel.any():
            return {"n": 0, "true_median": None, "pred_median": None, "error": None}
        t, p = float(np.median(true_min[sel])), float(np.median(pred_min[sel]))
        return {"n": int(sel.sum()), "true_median": t, "pred_median": p, "error": p - t}

    rows["pure"] = row(true_min < pure_below)
    last = max(hi for _, hi in bins)
    for lo, hi in bins:
        upper = (true_min < hi) if hi < last else (true_min <= hi)
        rows[f"{lo:.1f}-{hi:.1f}"] = row((true_min >= lo) & upper)
    errors = [abs(r["error"]) for k, r in rows.items() if k != "pure" and r["error"] is not None]
    worst = max(errors) if errors else None
    return {"bins": rows, "max_abs_error": worst, "tolerance": tolerance,
            "calibrated": None if worst is None else bool(worst <= tolerance)}
