"""Per-tile kernel of the neighbour fit: a boundary pixel as the two nearby grains it lies between.

Near a boundary the beam's two crystals are the grains on either side, and their interiors a few
scan steps away hold their patterns, recorded by the same detector. For each pixel near a
boundary the fit explains its preprocessed pattern C as α·N_a + β·N_b over every pair of grains
with interior pixels within ``radius`` scan steps, or ``far_radius`` where fewer than two grains
are nearer (N: their mean pattern there, the map's own segmentation naming the grains). It keeps
the pair of least residual when both coefficients are positive and β / (α + β) reaches
``min_minority``, and gives that minority as the weight and the second grain's mean interior
pattern there as B. Deep interiors (``deep_px`` from any boundary) are pure by their place and
left alone, as are pixels with one grain within reach.

Pure numpy; the Dask/Zarr drivers are ``kdeconv.separate.neighbours``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdeconv.preprocess.resample import resample

__all__ = ["NeighbourFitSettings", "DEFAULT_SETTINGS", "TileFit", "fit_chunk", "fit_tile", "unit_vectors",
           "fit_shape_for", "reach", "fit_radii", "nearest_for", "single_pattern_signal", "grain_coherence",
           "shared_direction", "mean_reliability", "one_crystal", "preprocessed", "seen_patterns",
           "vectors_of", "fit_window", "preprocess_shape"]

# Fitting needs the bands, not every pixel: larger patterns are fitted at this side (area average).
FIT_SIDE = 96
# Larger patterns are area-averaged to this side before their background is removed, and the
# fit's A and B resampled back: removal commutes with resampling (as in the model's own
# preprocessing), and at 480 px the full-size blurs took 90% of the fit's time (5x the model's).
PREPROCESS_SIDE = 2 * FIT_SIDE
# The direction a map's grains share is read from at least this many of them.
SHARED_MIN_GRAINS = 4


@dataclass(frozen=True)
class NeighbourFitSettings:
    radius: int = 3                 # scan steps: where a pixel's two grains' interiors are looked for
    # Where fewer than two grains have interiors within ``radius``, they are looked for this far
    # (0: not): a narrow grain's interior, or one the map's edge cuts off, lies farther out
    # (on the 120 px Zr and Mg maps, 10 of the 20 faint misses had it 4-7 steps away).
    far_radius: int = 6
    # A pair must give the second grain at least this share; below it noise and a grain's
    # orientation spread are fitted, and the pixel keeps the model's reading.
    min_minority: float = 0.07
    # Two segments whose nearby means correlate at this share of what two means of one grain
    # would (given their pixel counts and the map's noise) are one grain cut in two: no pair.
    same_grain_ncc: float = 0.9
    # Nor where the means, less what the map's grains share (the detector's gain, background
    # residue), correlate at this share: one crystal, a bent grain's parts within about 2
    # degrees. Distinct crystals read below 0.3 (Σ3 twins up to 0.42); one crystal turned by
    # 1 / 2 / 3 degrees 0.77 / 0.46 / 0.16 (Ni at 120 px).
    same_crystal_ncc: float = 0.5
    # The same test on the means binned to this side (0: off), where one crystal's patterns a
    # degree or two apart still correlate (Mg at 60 px, 2 degrees: 0.12 at full size, 0.34 at
    # 24 px) and distinct crystals do not (p99 0.10-0.14): small patterns' bent grains.
    crystal_side: int = 24
    # A kept pair explains about all of C that the map's noise leaves to explain (0.93-1.0 of
    # it on simulated maps); one below this share fits a third grain, C's own not being nearby.
    min_explained: float = 0.9
    deep_px: float = 2.0            # pixels this far inside a grain are pure (claims.DEEP_PX)
    # A map whose grains' deep patterns 3 steps apart are alike below this share of neighbours'
    # (``grain_coherence``) has bent grains: there a grain's nearest ``bent_nearest`` pixels
    # stand for it, so that its mean is its crystal near the pixel. Each grain holding one
    # orientation reads 0.997-1.0; 0.5 degrees per step 0.76-0.91.
    bent_coherence: float = 0.98
    bent_nearest: int = 6


DEFAULT_SETTINGS = NeighbourFitSettings()


@dataclass(frozen=True)
class TileFit:
    """The fit over a tile's core ``(cy, cx)``: ``second`` where a pair was kept, with its
    ``weights`` (wA, wB), ``b`` and, where the model's A was the second grain's crystal,
    ``a`` (both float32 in [0, 1] at the patterns' own shape from ``fit_chunk``, at the
    preprocessed shape from ``fit_tile``; zero elsewhere); ``fitted`` where a pair could be tried
    (two grains nearby)."""

    second: np.ndarray
    weights: np.ndarray
    a: np.ndarray
    a_replaced: np.ndarray
    b: np.ndarray
    fitted: np.ndarray


def reach(settings: NeighbourFitSettings = DEFAULT_SETTINGS) -> int:
    """How far (scan steps) a pixel's fit looks: the halo a chunk needs."""
    return max(int(settings.radius), int(settings.far_radius))


def _at_most(sig_shape: tuple[int, int], side: int) -> tuple[int, int]:
    """``sig_shape``, or scaled down to ``side`` on the longer side (aspect kept)."""
    sy, sx = (int(s) for s in sig_shape)
    scale = side / max(sy, sx)
    if scale >= 1:
        return sy, sx
    return max(1, round(sy * scale)), max(1, round(sx * scale))


def fit_shape_for(sig_shape: tuple[int, int]) -> tuple[int, int]:
    """The shape patterns are fitted at: their own, or area-averaged to ``FIT_SIDE`` on the longer side."""
    return _at_most(sig_shape, FIT_SIDE)


def preprocess_shape(sig_shape: tuple[int, int]) -> tuple[int, int]:
    """The shape the fit preprocesses patterns at: their own, or area-averaged to
    ``PREPROCESS_SIDE`` on the longer side."""
    return _at_most(sig_shape, PREPROCESS_SIDE)


def unit_vectors(patterns: np.ndarray, fit_shape: tuple[int, int],
                 window: np.ndarray | None = None) -> np.ndarray:
    """``(..., sy, sx)`` -> ``(..., d)`` float32 at ``fit_shape``, zero mean and unit norm (zeros
    stay zeros): the fit's coefficients then do not depend on a pattern's brightness. With
    ``window`` (bool ``fit_shape``, ``fit_window``) only those pixels count; the rest are 0."""
    x = np.asarray(patterns, np.float32)
    if tuple(x.shape[-2:]) != tuple(fit_shape):
        x = resample(x, fit_shape)
    x = x.reshape(x.shape[:-2] + (-1,)).astype(np.float32)
    if window is not None:
        keep = np.asarray(window, bool).reshape(-1)
        x = np.where(keep, x - x[..., keep].mean(axis=-1, keepdims=True), 0.0).astype(np.float32)
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def fit_window(pre: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """The pixels at the fit's ``shape`` that the fit compares: those wholly within the pattern
    pixels that vary across ``pre`` (``(..., sy, sx)``, a map's patterns as the model sees them;
    ``preprocess.mask.signal_pixels``). A vendor's mask or a round screen's surround is 0 in every
    pattern, and compared there too every crystal looks alike. None where every pixel varies, or
    none does (one pattern)."""
    from kdeconv.preprocess.mask import signal_pixels

    pre = np.asarray(pre)
    signal = signal_pixels(pre)
    if signal.all() or not signal.any():  # all vary, or too few patterns to tell
        return None
    return _wholly_inside(signal, shape)


def _wholly_inside(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels of ``mask`` (bool) resampled to ``shape`` that lie wholly inside it."""
    mask = np.asarray(mask, bool)
    if tuple(mask.shape) == tuple(shape):
        return mask
    return resample(mask.astype(np.float32), tuple(shape)) >= 0.999


def _unit(v: np.ndarray) -> np.ndarray:
    v = v - v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def nearest_for(coherence: float, settings: NeighbourFitSettings = DEFAULT_SETTINGS) -> int | None:
    """How many pixels stand for a grain on a map of this ``grain_coherence`` (None: all nearby)."""
    return settings.bent_nearest if coherence < settings.bent_coherence else None


def _nearest(where: np.ndarray, y: int, x: int, count: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, cols) of ``where``, or of its ``count`` pixels nearest (y, x) (ties: raster order)."""
    iy, ix = np.nonzero(where)
    if count is None or len(iy) <= count:
        return iy, ix
    order = np.argsort((iy - y) ** 2 + (ix - x) ** 2, kind="stable")[:count]
    return iy[order], ix[order]


def _grains_within(labels: np.ndarray, members: np.ndarray, r: int) -> np.ndarray:
    """How many grains (up to 2) have a member within ``r`` steps (a square) of each pixel."""
    from scipy.ndimage import maximum_filter

    count = np.zeros(labels.shape, np.int8)
    for g in np.unique(labels[members & (labels >= 0)]):
        count += maximum_filter(members & (labels == g), size=2 * r + 1, mode="constant")
        if (count >= 2).all():
            break
    return np.minimum(count, 2)


def fit_radii(labels: np.ndarray, members: np.ndarray,
              settings: NeighbourFitSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """How far (scan steps) each pixel's fit looks for grains: ``radius``, or ``far_radius``
    where fewer than two grains have members within ``radius``."""
    r, far = int(settings.radius), reach(settings)
    if far == r:
        return np.full(labels.shape, r, np.int16)
    return np.where(_grains_within(labels, members, r) >= 2, r, far).astype(np.int16)


def _to_unit_range(pattern: np.ndarray) -> np.ndarray:
    lo, hi = float(pattern.min()), float(pattern.max())
    return (pattern - lo) / (hi - lo) if hi > lo else np.zeros_like(pattern)


def _same_grain_nccs(fit: np.ndarray, labels: np.ndarray, members: np.ndarray,
                     step: int) -> tuple[np.ndarray, np.ndarray]:
    """(grain, NCC) of every two members of one grain ``step`` pixels apart along a row or a column."""
    grains, nccs = [], []
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(0, -step), slice(step, None)
        a, b = tuple(a), tuple(b)
        same = members[a] & members[b] & (labels[a] == labels[b]) & (labels[a] >= 0)
        grains.append(labels[a][same])
        nccs.append(np.einsum("nd,nd->n", fit[a][same], fit[b][same]))
    return np.concatenate(grains), np.concatenate(nccs)


def _same_grain_ncc(fit: np.ndarray, labels: np.ndarray, members: np.ndarray, step: int) -> float | None:
    """Median NCC of two members of one grain ``step`` pixels apart along a row or a column."""
    _, nccs = _same_grain_nccs(fit, labels, members, step)
    return float(np.median(nccs)) if len(nccs) else None


def single_pattern_signal(fit: np.ndarray, labels: np.ndarray, members: np.ndarray) -> float:
    """The NCC of two neighbouring patterns of one grain (median over adjacent member pairs): the
    share of a single pattern that is signal, which sets how well a mean of n of them shows
    their grain (``mean_reliability``)."""
    ncc = _same_grain_ncc(fit, labels, members, 1)
    return 0.5 if ncc is None else float(np.clip(ncc, 0.01, 0.99))


def grain_coherence(fit: np.ndarray, labels: np.ndarray, members: np.ndarray, step: int = 3) -> float:
    """How alike a grain's patterns ``step`` pixels apart are, as a share of its neighbours'
    likeness, the median over the grains that have both (capped at 1): 1 where each grain holds
    one orientation, lower where the lattice turns across it (a deformed or recovered grain, on
    deep interiors of simulated maps: 0.76-0.91 at 0.5 degrees per step, 0.36-0.77 at 1.5). Each
    grain is its own reference, since grains differ in how much of a pattern is signal (a flat
    60 px Mg map of 40 grains: 0.74-0.81), and pooled, far pairs from a few large grains read as
    bent (0.95 there, 0.997 per grain). 1 where it cannot be read."""
    near_grain, near = _same_grain_nccs(fit, labels, members, 1)
    far_grain, far = _same_grain_nccs(fit, labels, members, step)
    ratios = []
    for g in np.unique(far_grain):
        own = near[near_grain == g]
        level = float(np.median(own)) if len(own) else 0.0
        if level > 0:
            ratios.append(max(float(np.median(far[far_grain == g])), 0.0) / level)
    return float(min(1.0, np.median(ratios))) if ratios else 1.0


def shared_direction(fit: np.ndarray, labels: np.ndarray, members: np.ndarray,
                     min_grains: int = SHARED_MIN_GRAINS) -> tuple[np.ndarray | None, float]:
    """The unit direction that the map's grains share (the detector's fixed-pattern gain, the
    background left after its removal): the mean of their unit mean vectors, each grain counted
    once; and its share of a grain's variance (the squared length of that mean). None (and 0)
    with fewer than ``min_grains`` grains, whose mean would hold the grains themselves."""
    grains = np.unique(labels[members & (labels >= 0)])
    if len(grains) < min_grains:
        return None, 0.0
    means = np.stack([_unit(fit[members & (labels == g)].mean(axis=0)) for g in grains])
    mean = means.mean(axis=0)
    length = float(np.linalg.norm(mean))
    return (mean / length).astype(np.float32), length * length


def _without(vectors: np.ndarray, direction: np.ndarray | None) -> np.ndarray:
    """Unit ``vectors`` less their component along ``direction``, made unit again."""
    if direction is None or not np.any(direction):
        return vectors
    out = vectors - np.outer(vectors @ direction, direction)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norm, out=np.zeros_like(out), where=norm > 0)


def one_crystal(means: np.ndarray, reliability: np.ndarray, shared: np.ndarray | None,
                settings: NeighbourFitSettings = DEFAULT_SETTINGS,
                shape: tuple[int, int] | None = None, window: np.ndarray | None = None) -> np.ndarray:
    """bool (k, k): which of ``k`` unit mean patterns (rows of ``means``, of ``reliability``
    ``mean_reliability`` each) are one grain cut in two, or one crystal: their correlation
    reaches ``same_grain_ncc`` of what two means of one grain would give, or, less the map's
    ``shared`` direction, ``same_crystal_ncc`` of it; or, less it and binned from ``shape`` (the
    means' pattern shape) to ``crystal_side``, ``same_crystal_ncc`` itself (binning averages the
    noise away), on the binned pixels wholly inside the map's ``window`` (``fit_window``).
    Without ``shared`` only the first test applies."""
    gram = means @ means.T
    bar = np.sqrt(np.outer(reliability, reliability))
    same = gram >= settings.same_grain_ncc * bar
    if shared is None:  # what a camera adds to every pattern would pass for one crystal
        return same
    crystals = _without(means, shared)
    same |= crystals @ crystals.T >= settings.same_crystal_ncc * bar
    if shape is not None and 0 < settings.crystal_side < max(shape):
        scale = settings.crystal_side / max(shape)
        coarse_shape = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
        coarse_window = None if window is None else _wholly_inside(np.reshape(window, shape), coarse_shape)
        coarse = unit_vectors(crystals.reshape((len(crystals),) + tuple(shape)), coarse_shape,
                              coarse_window)
        same |= coarse @ coarse.T >= settings.same_crystal_ncc
    return same


def mean_reliability(n, signal: float):
    """Squared NCC of the mean of ``n`` patterns of one grain with the grain's noise-free pattern."""
    n = np.asarray(n, np.float64)
    return n * signal / (1.0 + (n - 1.0) * signal)


def fit_tile(pre: np.ndarray, fit: np.ndarray, labels: np.ndarray, members: np.ndarray,
             interior: np.ndarray, core: tuple[slice, slice], a_fit: np.ndarray | None = None,
             settings: NeighbourFitSettings = DEFAULT_SETTINGS, signal: float | None = None,
             shared: np.ndarray | None = None, nearest: int | None = None,
             window: np.ndarray | None = None) -> TileFit:
    """The neighbour fit over ``core`` of a tile (its nav slices; the rest is the halo).

    ``pre``: ``(hy, hx, sy, sx)`` the tile's patterns preprocessed as the model sees them, float32
    in [0, 1] at their own shape; ``fit``: ``(hy, hx, d)`` their ``unit_vectors``; ``labels``
    ``(hy, hx)`` the map's grain per pixel (-1 outside grains); ``members`` where a pixel may stand
    for its grain (inside it, not blank); ``interior`` px from the nearest boundary; ``a_fit``
    ``(cy, cx, d)`` unit vectors of the model's A over the core (None: A is never replaced);
    ``signal``: the map's ``single_pattern_signal`` (None: measured on this tile); ``shared``: the
    map's ``shared_direction`` (None: one crystal is told only by the means' own correlation);
    ``nearest``: each grain's mean from its members nearest the pixel, at most this many (None:
    all within the radius; ``nearest_for`` the map); ``window``: the map's ``fit_window``, which
    ``fit`` was made with.
    """
    hy, hx = labels.shape
    (y0, y1), (x0, x1) = (core[0].start, core[0].stop), (core[1].start, core[1].stop)
    cy, cx = y1 - y0, x1 - x0
    sig = pre.shape[-2:]
    second = np.zeros((cy, cx), bool)
    fitted = np.zeros((cy, cx), bool)
    a_replaced = np.zeros((cy, cx), bool)
    weights = np.zeros((cy, cx, 2), np.float32)
    a_out = np.zeros((cy, cx) + sig, np.float32)
    b_out = np.zeros((cy, cx) + sig, np.float32)
    fit_shape = fit_shape_for(sig)
    radii = fit_radii(labels, members, settings)
    if signal is None:
        signal = single_pattern_signal(fit, labels, members)
    for y in range(y0, y1):
        for x in range(x0, x1):
            if interior[y, x] >= settings.deep_px or not np.any(fit[y, x]):
                continue
            r = int(radii[y, x])
            wy, wx = slice(max(0, y - r), min(hy, y + r + 1)), slice(max(0, x - r), min(hx, x + r + 1))
            lab, mem = labels[wy, wx], members[wy, wx]
            grains = np.unique(lab[mem & (lab >= 0)])
            if len(grains) < 2:
                continue
            fitted[y - y0, x - x0] = True
            near = [_nearest(mem & (lab == g), y - wy.start, x - wx.start, nearest) for g in grains]
            means = np.stack([_unit(fit[wy, wx][idx].mean(axis=0)) for idx in near])
            gram = means @ means.T
            reliability = mean_reliability([len(idx[0]) for idx in near], signal)
            one_grain = one_crystal(means, reliability, shared, settings, fit_shape, window)
            proj = means @ fit[y, x]
            best = None
            for i in range(len(grains)):
                for j in range(i + 1, len(grains)):
                    if one_grain[i, j]:
                        continue
                    g2 = np.array([[gram[i, i], gram[i, j]], [gram[i, j], gram[j, j]]])
                    b2 = np.array([proj[i], proj[j]])
                    try:
                        coef = np.linalg.solve(g2, b2)
                    except np.linalg.LinAlgError:
                        continue
                    if (coef <= 0).any():
                        continue
                    residual = 1.0 - float(b2 @ coef)
                    if best is None or residual < best[0]:
                        best = (residual, i, j, coef)
            # a pair that explains C less than one grain's interior alone misses C's own grain
            if best is None or 1.0 - best[0] <= float(np.max(proj)) ** 2:
                continue
            _, i, j, coef = best
            if coef[1] > coef[0]:
                i, j, coef = j, i, coef[::-1]
            minority = float(coef[1] / coef.sum())
            if minority < settings.min_minority:
                continue
            k = (y - y0, x - x0)
            wa, wb = 1.0 - minority, minority
            share = wa * wa + wb * wb + 2 * wa * wb * float(gram[i, j])  # a mixture's signal variance
            rel = float(np.sqrt(reliability[i] * reliability[j]))
            explained = (1.0 - best[0]) / (rel * share * signal / (share * signal + 1.0 - signal))
            if explained < settings.min_explained:
                continue
            second[k] = True
            weights[k] = (1.0 - minority, minority)
            b_out[k] = _to_unit_range(pre[wy, wx][near[j]].mean(axis=0))
            if a_fit is not None and float(a_fit[k] @ means[j]) > float(a_fit[k] @ means[i]):
                # the model's A is the second grain's crystal: A becomes the first grain's interior
                a_out[k] = _to_unit_range(pre[wy, wx][near[i]].mean(axis=0))
                a_replaced[k] = True
    return TileFit(second=second, weights=weights, a=a_out, a_replaced=a_replaced, b=b_out, fitted=fitted)


def fit_chunk(raw: np.ndarray, blank: np.ndarray, labels: np.ndarray,
              interior: np.ndarray, core: tuple[slice, slice], a_core: np.ndarray | None,
              background: dict, static_bg: np.ndarray | None = None,
              settings: NeighbourFitSettings = DEFAULT_SETTINGS, signal: float | None = None,
              shared: np.ndarray | None = None, nearest: int | None = None,
              window: np.ndarray | None = None) -> TileFit:
    """``fit_tile`` from a chunk's raw patterns with their halo, ``(hy, hx, sy, sx)``: preprocessed
    as ``separate`` does for the model (``background``, ``static_bg``) at their own shape.
    ``blank`` ``(hy, hx)`` flags frames of one value; ``a_core`` the model's A over the core, in
    the map's dtype; ``signal``, ``shared`` and ``nearest`` as ``fit_tile``'s; ``window``: the
    map's ``fit_window``."""
    from dataclasses import replace

    from scipy.ndimage import maximum_filter

    from kdeconv.preprocess.mask import from_screen, screen_shape, to_screen
    from kdeconv.separate.chunk import from_dtype

    # only the core's pixels near boundaries are fitted, from patterns within reach of them
    fitted = np.zeros(blank.shape, bool)
    fitted[core] = True
    fitted &= (interior < settings.deep_px) & ~blank
    # the far ring only around the pixels that look that far
    radii = fit_radii(labels, (labels >= 0) & ~blank, settings)
    needed = np.zeros_like(fitted)
    for r in np.unique(radii[fitted]):
        needed |= maximum_filter(fitted & (radii == r), size=2 * int(r) + 1, mode="constant")
    pre, fit = preprocessed(raw, blank, background, static_bg, needed, window)
    shape = fit_shape_for(pre.shape[-2:])
    a_fit = None
    if a_core is not None:
        a_fit = np.zeros(a_core.shape[:2] + (fit.shape[-1],), np.float32)
        here = fitted[core]
        a_fit[here] = unit_vectors(to_screen(from_dtype(a_core[here]), background), shape, window)
    tile = fit_tile(pre, fit, labels, (labels >= 0) & ~blank, interior, core, a_fit, settings, signal,
                    shared, nearest, window)
    screen = screen_shape(raw.shape[-2:], background)
    if tuple(pre.shape[-2:]) != tuple(screen):  # preprocessed smaller: A and B back to full size
        tile = replace(tile, a=_resampled(tile.a, tile.a_replaced, screen),
                       b=_resampled(tile.b, tile.second, screen))
    if tuple(screen) != tuple(raw.shape[-2:]):  # a round screen's square: A and B in place
        tile = replace(tile, a=from_screen(tile.a, raw.shape[-2:], background),
                       b=from_screen(tile.b, raw.shape[-2:], background))
    return tile


def _resampled(stack: np.ndarray, where: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``stack`` ``(cy, cx, sy, sx)`` at ``shape``, resampled where ``where`` (zero elsewhere)."""
    out = np.zeros(stack.shape[:2] + tuple(shape), np.float32)
    if where.any():
        out[where] = np.clip(resample(stack[where], shape), 0.0, 1.0)
    return out


def seen_patterns(raw: np.ndarray, blank: np.ndarray, background: dict,
                  static_bg: np.ndarray | None = None, needed: np.ndarray | None = None) -> np.ndarray:
    """Raw ``(hy, hx, sy, sx)`` -> the patterns as the model sees them (float32 [0, 1], their own
    shape or a round screen's square, area-averaged to ``preprocess_shape``); zeros for blank
    frames and where ``needed`` is False."""
    from kdeconv.preprocess.mask import screen_shape
    from kdeconv.separate.chunk import preprocess_patterns

    hy, hx = raw.shape[:2]
    shape = preprocess_shape(screen_shape(raw.shape[-2:], background))
    made = ~blank if needed is None else needed & ~blank
    pre = np.zeros((hy, hx) + shape, np.float32)
    if made.any():
        pre[made] = preprocess_patterns(raw[made], background, static_bg=static_bg, work_shape=shape)
    return pre


def preprocessed(raw: np.ndarray, blank: np.ndarray, background: dict,
                 static_bg: np.ndarray | None = None, needed: np.ndarray | None = None,
                 window: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``seen_patterns`` and their ``unit_vectors`` over ``window`` (the map's ``fit_window``;
    None: all pixels), zeros for blank frames and where ``needed`` is False."""
    pre = seen_patterns(raw, blank, background, static_bg, needed)
    return pre, vectors_of(pre, ~blank if needed is None else needed & ~blank, window)


def vectors_of(pre: np.ndarray, made: np.ndarray, window: np.ndarray | None) -> np.ndarray:
    """``(hy, hx, d)`` ``unit_vectors`` of ``pre`` ``(hy, hx, sy, sx)`` where ``made``, else 0."""
    shape = fit_shape_for(pre.shape[-2:])
    fit = np.zeros(pre.shape[:2] + (shape[0] * shape[1],), np.float32)
    if made.any():
        fit[made] = unit_vectors(pre[made], shape, window)
    return fit
