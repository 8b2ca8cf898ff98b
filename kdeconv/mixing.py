"""The two ways to build a mixed pattern C from pure patterns A, B and weights (wA, wB).

Notation, per pair: ``N(x)`` is :func:`kdeconv.preprocess.normalize` (per-pattern stretch to
[0, 1], min/max or percentiles taken inside the mask when smart); ``R(x)`` is the realism
degradation (identity when realism is off, see :mod:`kdeconv.generate.augment`); ``g`` the gamma
(1 when realism is off); ``m`` the mask (applied only to pairs marked ``masked``).

Both pipelines first make the clean targets that are stored:

    A' = N(A),  B' = N(B)                      (times m for masked pairs)
    M  = wA * A' + wB * B'                     (wA + wB = 1, so M is in [0, 1])

``normalize_then_mix`` keeps the mixture's own contrast (a 50/50 mix of two patterns is
flatter than either):

    C = clip(R(M), 0, 1) ** g                  (times m for masked pairs)

``mix_then_normalize`` stretches the mixture again, as a camera pattern is stretched before it
reaches the model (this is what `separate` sees):

    C = N(R(M)) ** g                           (times m for masked pairs)

So with realism off, ``C = wA*A' + wB*B'`` exactly for normalize_then_mix and
``C = N(wA*A' + wB*B')`` for mix_then_normalize, computable from the stored A, B and weights.
Mixing normalised (not raw) pure patterns is deliberate: it makes C reproducible from the
stored targets, and two grains under the same beam have near-equal raw brightness anyway.

Stored as uint16 over the full range: ``u = round(clip(x, 0, 1) * 65535)``. A' and B' are
rounded to that grid *before* mixing, so C follows from the stored uint16 A and B.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdeconv.errors import InputError
from kdeconv.preprocess import normalize

__all__ = ["PIPELINES", "normalize_then_mix", "mix_then_normalize", "mix", "combine", "to_uint16",
           "from_uint16", "UINT16_MAX"]

PIPELINES = ("normalize_then_mix", "mix_then_normalize")
UINT16_MAX = 65535


def to_uint16(x: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint16 over the full range 0..65535 (values outside are clipped)."""
    # float32 is exact enough here: x * 65535 < 2**16 keeps ~1e-3 absolute precision.
    y = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    y *= np.float32(UINT16_MAX)
    return np.rint(y, out=y).astype(np.uint16)


def from_uint16(u: np.ndarray) -> np.ndarray:
    """uint16 full range -> float32 [0, 1]."""
    x = np.asarray(u).astype(np.float32)
    x /= np.float32(UINT16_MAX)
    return x


def _quantize_in_place(x: np.ndarray) -> np.ndarray:
    """``to_uint16(x)`` for a float32 ``x`` of normalised values in [0, 1], which is left equal
    to ``from_uint16`` of the result: the same numbers in fewer passes, without new stacks."""
    x *= np.float32(UINT16_MAX)
    np.rint(x, out=x)
    u = x.astype(np.uint16)
    x /= np.float32(UINT16_MAX)
    return u


def _normalize_rows(x, mask, rows, **kw) -> np.ndarray:
    # Masked pairs take their statistics inside the mask; the others over the whole pattern.
    if mask is None or rows.all():
        return normalize(x, mask=mask, **kw)
    if not rows.any():
        return normalize(x, mask=None, **kw)
    out = np.empty(x.shape, dtype=np.float32)
    if rows.any():
        out[rows] = normalize(x[rows], mask=mask, **kw)
    out[~rows] = normalize(x[~rows], mask=None, **kw)
    return out


def _weights(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(n, 2)
    if np.any(w < 0) or np.any(w > 1) or not np.allclose(w.sum(axis=1), 1.0, atol=1e-6):
        raise InputError("weights must be in [0, 1] and each pair must sum to 1")
    return w


def mix(pipeline: str, a: np.ndarray, b: np.ndarray, weights: np.ndarray, *,
        mask: np.ndarray | None = None, masked: np.ndarray | None = None,
        method: str = "minmax", smart: bool = True, percentiles=(0.5, 99.5),
        degrade: Callable[[np.ndarray], np.ndarray] | None = None,
        gamma: np.ndarray | float | None = None,
        quantize: bool = True, as_uint16: bool = False
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(C, A', B')`` float32 ``(n, sy, sx)`` in [0, 1] for pure ``a``, ``b`` (n, sy, sx).

    ``masked`` (n,) bool selects the pairs that are masked (all pairs if ``mask`` is given and
    ``masked`` is None): they are zeroed outside ``mask`` and, when ``smart``, normalised with
    statistics from inside it; the other pairs use the whole pattern. ``degrade`` maps the
    clean mixture stack M to R(M); ``gamma`` is a scalar or (n,) array. With ``quantize`` A'
    and B' are rounded to the uint16 grid before mixing, so :func:`combine` on the stored
    uint16 targets gives back C. ``as_uint16`` returns the three arrays as stored (uint16).
    """
    if pipeline not in PIPELINES:
        raise InputError(f"unknown pipeline {pipeline!r} (use one of {', '.join(PIPELINES)})")
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 3:
        raise InputError(f"A and B must be (n, sy, sx) of one shape, got {a.shape} and {b.shape}")
    n = len(a)
    w = _weights(weights, n)
    rows, zero = _masked_rows(mask, masked, n)
    norm = dict(mask=mask, rows=rows, method=method, smart=smart, percentiles=percentiles)
    an = _normalize_rows(a, **norm)
    bn = _normalize_rows(b, **norm)
    if zero is not None:
        an[zero] = 0
        bn[zero] = 0
    ua = ub = None
    if quantize or as_uint16:
        # Mix the targets exactly as they will be stored, so C follows from the stored A and B.
        ua, ub = _quantize_in_place(an), _quantize_in_place(bn)
    c = combine(pipeline, an, bn, w, mask=mask, masked=rows, method=method, smart=smart,
                percentiles=percentiles, degrade=degrade, gamma=gamma)
    if as_uint16:
        return to_uint16(c), ua, ub
    return c, an, bn


def _masked_rows(mask, masked, n: int):
    """Which rows carry the mask, and the (n, sy, sx) pixels to zero; (None, None) without a mask."""
    if mask is None:
        return None, None
    rows = np.ones(n, bool) if masked is None else np.asarray(masked, dtype=bool).reshape(n)
    return rows, rows[:, None, None] & ~np.asarray(mask, dtype=bool)[None]


def combine(pipeline: str, a_t: np.ndarray, b_t: np.ndarray, weights: np.ndarray, *,
            mask: np.ndarray | None = None, masked: np.ndarray | None = None,
            method: str = "minmax", smart: bool = True, percentiles=(0.5, 99.5),
            degrade: Callable[[np.ndarray], np.ndarray] | None = None,
            gamma: np.ndarray | float | None = None) -> np.ndarray:
    """C from the targets A', B' (float32 [0, 1], e.g. the stored uint16 / 65535): the second
    half of :func:`mix` (``M = wA*A' + wB*B'``, then the pipeline's formula for C)."""
    if pipeline not in PIPELINES:
        raise InputError(f"unknown pipeline {pipeline!r} (use one of {', '.join(PIPELINES)})")
    an = np.asarray(a_t, dtype=np.float32)
    bn = np.asarray(b_t, dtype=np.float32)
    n = len(an)
    w = _weights(weights, n)
    rows, zero = _masked_rows(mask, masked, n)
    norm = dict(mask=mask, rows=rows, method=method, smart=smart, percentiles=percentiles)
    w32 = w.astype(np.float32)
    m = an * w32[:, 0, None, None]
    m += bn * w32[:, 1, None, None]
    r = degrade(m) if degrade is not None else m
    if pipeline == "normalize_then_mix":
        c = np.clip(r, 0.0, 1.0).astype(np.float32)
    else:
        c = _normalize_rows(r, **norm)
    if gamma is not None:
        g = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (n,))
        if np.any(g != 1.0):
            c = np.power(c.astype(np.float64), g[:, None, None]).astype(np.float32)
    if zero is not None:
        c[zero] = 0
    return c


def normalize_then_mix(a, b, weights, **kwargs):
    """``C = clip(R(wA*N(A) + wB*N(B)), 0, 1) ** g``; returns ``(C, N(A), N(B))``. See module doc."""
    return mix("normalize_then_mix", a, b, weights, **kwargs)


def mix_then_normalize(a, b, weights, **kwargs):
    """``C = N(R(wA*N(A) + wB*N(B))) ** g``; returns ``(C, N(A), N(B))``. See module doc."""
    return mix("mix_then_normalize", a, b, weights, **kwargs)
