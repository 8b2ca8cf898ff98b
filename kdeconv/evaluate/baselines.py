"""What an EBSD user can do today without kdeconv, on the same mixed patterns.

(i) ``raw``: index the mixture C; it can name at most one constituent.
(ii) ``residual``: index C, simulate the best match from the master pattern of the phase it
indexed as, fit scale + offset by least squares inside the mask, subtract, and index the residual
for the second grain. The second grain is claimed only where the residual indexes with confidence
``cm >= min_cm`` (indexing noise always returns *some* orientation).

Both see C as ``kdeconv separate`` would: with static and dynamic background removal where the
map still carries its detector background, stretched only where it was already corrected
(``prepare_mixtures``, the same per-map decision).
"""

from __future__ import annotations

import numpy as np

from kdeconv.evaluate.indexing import IndexResult, index_patterns
from kdeconv.evaluate.reference import simulate_at

__all__ = ["background_corrected", "prepare_mixtures", "fit_subtract", "raw_baseline", "residual_baseline"]


def background_corrected(patterns: np.ndarray, static_background: np.ndarray | None = None) -> np.ndarray:
    """Static then dynamic background removal -> float32 [0, 1].

    The static background defaults to what ``kdeconv separate`` uses (the stack's mean pattern,
    blurred to its smooth detector part), so the baselines see the same input as the model.
    Circular-masked patterns are filled outside the mask first and masked again after, as
    ``separate`` does.
    """
    from kdeconv.evaluate.metrics import slice_rows
    from kdeconv.preprocess.background import (
        fill_outside_mask,
        remove_dynamic_background,
        remove_static_background,
        static_background_from_mean,
    )
    from kdeconv.preprocess.mask import circular_mask, detect_masked

    stack = np.asarray(patterns).reshape((-1,) + tuple(np.shape(patterns)[-2:]))
    if static_background is None:
        static_background = static_background_from_mean(stack.mean(axis=0, dtype=np.float64), "auto")
    mask = circular_mask(stack.shape[-2:]) if min(stack.shape[-2:]) >= 3 else None
    out = np.empty(stack.shape, np.float32)
    step = slice_rows(stack.shape[-2:], 4, 128.0)
    for i in range(0, len(stack), step):  # per pattern, so slices change nothing but memory
        part = stack[i:i + step].astype(np.float32)
        masked = detect_masked(part, mask) if mask is not None else np.zeros(len(part), bool)
        if masked.any():
            part[masked] = fill_outside_mask(part[masked])
        part = remove_static_background(part, static_background, dtype_out=np.float32, out_range=(0, 1))
        part = remove_dynamic_background(part, dtype_out=np.float32, out_range=(0, 1))
        if masked.any():
            part[masked] *= mask
        out[i:i + step] = part
    return out


def prepare_mixtures(patterns: np.ndarray, mode: str = "auto") -> tuple[np.ndarray, dict]:
    """C ready for indexing -> (float32 [0, 1] (n, sy, sx), decision record).

    ``mode`` ``auto`` decides per map (``decide_background``): ``raw`` removes the static and
    dynamic background (``background_corrected``), ``processed`` only stretches each pattern. A
    round screen's dark corners are masked first (``decide_mask``), as ``separate`` does.
    """
    from kdeconv.preprocess.background import decide_input, rescale_per_pattern
    from kdeconv.preprocess.mask import from_screen, window_patterns

    stack = np.asarray(patterns).reshape((-1,) + tuple(np.shape(patterns)[-2:]))
    # a spread-out sample, about as many patterns as separate decides on (16 x 16)
    take = np.unique(np.linspace(0, len(stack) - 1, min(len(stack), 256)).round().astype(int))
    decision = {"requested": mode, **decide_input(stack[take], mode, "auto")}
    seen = window_patterns(stack, decision)
    if decision["mode"] == "raw":
        out = background_corrected(seen)
    else:
        out = rescale_per_pattern(seen.astype(np.float32), 0.0, 1.0)
    # back in the detector's frame (zero around a round screen's square), where the PC holds
    return from_screen(out, stack.shape[-2:], decision), decision


def fit_subtract(mixture: np.ndarray, model: np.ndarray,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern, least-squares ``mixture ~ s * model + o`` inside ``mask``; return (residual, s).

    The residual is zero outside the mask. A flat model gives s = 0 (nothing removed but the mean).
    """
    c = np.asarray(mixture, np.float64).reshape((-1,) + tuple(np.shape(mixture)[-2:]))
    m = np.asarray(model, np.float64).reshape(c.shape)
    keep = np.ones(c.shape[-2:], bool) if mask is None else np.asarray(mask, bool)
    cv, mv = c[:, keep], m[:, keep]
    mc = mv - mv.mean(axis=1, keepdims=True)
    var = (mc * mc).sum(axis=1)
    scale = np.where(var > 1e-12, (mc * (cv - cv.mean(axis=1, keepdims=True))).sum(axis=1)
                     / np.where(var > 1e-12, var, 1.0), 0.0)
    offset = cv.mean(axis=1) - scale * mv.mean(axis=1)
    residual = np.zeros_like(c)
    residual[:, keep] = cv - scale[:, None] * mv - offset[:, None]
    return residual.astype(np.float32), scale


def _orix_phases(phases) -> list:
    """orix phases to index with, from ``RefPhase`` objects (or orix phases as they are)."""
    items = phases if isinstance(phases, (list, tuple)) else [phases]
    return [getattr(p, "phase", p) for p in items]


def raw_baseline(mixture_bc: np.ndarray, detector, phases) -> dict:
    """``phases``: a list of ``RefPhase`` (or orix phases), or one."""
    first = index_patterns(mixture_bc, detector, _orix_phases(phases))
    n = first.quaternions.shape[0]
    return {"first": first, "second": IndexResult(np.full((n, 4), np.nan), np.zeros(n, np.float32),
                                                  np.zeros(n, np.int32), np.zeros(n, bool)),
            "second_claimed": np.zeros(n, bool)}


def residual_baseline(mixture_bc: np.ndarray, detector, phases: list, first: IndexResult,
                      mask: np.ndarray | None = None, min_cm: float = 0.4) -> dict:
    """``phases``: the ``RefPhase`` list that ``first`` was indexed against; each best match is
    simulated from the master of the phase it indexed as (``first.phase_id``)."""
    from kdeconv.evaluate.metrics import slice_rows
    from kdeconv.preprocess.background import remove_dynamic_background

    mixture_bc = np.asarray(mixture_bc).reshape((-1,) + tuple(np.shape(mixture_bc)[-2:]))
    residual = np.empty(mixture_bc.shape, np.float32)
    scale = np.empty(len(mixture_bc))
    step = slice_rows(mixture_bc.shape[-2:], 8, 64.0)  # fit_subtract works in float64
    for i in range(0, len(mixture_bc), step):
        s = slice(i, i + step)
        best = simulate_at(first.quaternions[s], detector, list(phases), phase_id=first.phase_id[s])
        # Same dynamic background removal as the mixture, so the fit compares like with like.
        best = remove_dynamic_background(best, dtype_out=np.float32, out_range=(0, 1))
        residual[s], scale[s] = fit_subtract(mixture_bc[s], best, mask)
    second = index_patterns(residual, detector, _orix_phases(phases), rows=first.indexed)  # claims need both
    claimed = second.indexed & (second.cm >= min_cm) & first.indexed
    return {"first": first, "second": second, "second_claimed": claimed, "scale": scale,
            "residual": residual}
