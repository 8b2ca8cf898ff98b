"""Kernels of the pure-pattern search: features, neighbour similarity, grains, the chosen set.

Pure numpy/scipy on small arrays; no Dask or Zarr here (``find_pure`` drives them on a map).

The search needs no indexing, phase or PC. Each pattern becomes a small feature vector: the
pattern with ``separate``'s background removal, area-binned to about ``FEATURE_SIDE`` px a side
(binning averages away shot noise and makes the search cheap), zero mean and unit norm, so that
the dot product of two features is their normalised cross-correlation (NCC). Neighbouring
patterns of one grain correlate highly; a grain boundary or a mixture lowers the NCC to one side.
Connected regions of mutually similar patterns are grains, and the patterns deep inside a grain,
away from every other region, are the pure ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdeconv.errors import InputError

__all__ = ["FEATURE_SIDE", "NEIGHBOUR_OFFSETS", "feature_shape", "pattern_features",
           "neighbour_similarity", "relative_similarity", "adaptive_threshold", "segment_grains",
           "interior_distance", "pure_candidates", "choose_pure", "background_settings",
           "segment_contacts", "crystal_groups"]

# 16 x 16 float32 = 1 KB a pattern: a 2-million-pattern map's features fit in 2 GB.
FEATURE_SIDE = 16
# (dy, dx) of the similarity channels: right, down, down-right, down-left, one step and two
# steps away. With their reverses they cover the 8 pixels around a pixel and the 8 beyond them.
NEIGHBOUR_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (2, 2), (2, -2))


def background_settings(background: Any) -> dict[str, Any]:
    """``separate``'s background settings as a full dict (missing keys take their defaults).

    Accepts a ``BackgroundConfig``, a dict of its fields (``{"static": "none", "dynamic": False}``
    for patterns that are already background-corrected) or None for the defaults.
    """
    from pydantic import ValidationError

    from kdeconv.config.separate import BackgroundConfig

    if background is None:
        return BackgroundConfig().model_dump()
    if isinstance(background, BackgroundConfig):
        return background.model_dump()
    if not isinstance(background, dict):
        raise InputError(f"background must be 'auto' or a dict of background settings, got {background!r}")
    try:
        return BackgroundConfig.model_validate(background).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"invalid background setting {where}: {first['msg']}") from None


def feature_shape(sig_shape: tuple[int, int], side: int = FEATURE_SIDE) -> tuple[int, int]:
    """Binned ``(ty, tx)``: the longer side becomes ``side`` (never upsampled), aspect kept."""
    sy, sx = int(sig_shape[0]), int(sig_shape[1])
    factor = max(1.0, max(sy, sx) / side)
    return max(1, round(sy / factor)), max(1, round(sx / factor))


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64: row i averages the input pixels under output bin i (area-weighted)."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    left, right = np.arange(n_in)[None, :], np.arange(1, n_in + 1)[None, :]
    overlap = np.clip(np.minimum(right, edges[1:, None]) - np.maximum(left, edges[:-1, None]), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def pattern_features(patterns: np.ndarray, background: dict[str, Any] | None,
                     static_bg: np.ndarray | None = None, *, side: int = FEATURE_SIDE,
                     masked: bool | None = None) -> np.ndarray:
    """Feature vectors, float32 ``(n, k)`` with ``k = ty * tx`` (``feature_shape``).

    ``patterns`` (n, sy, sx) (or (..., sy, sx)) get ``separate``'s preprocessing with
    ``background`` (see ``background_settings``; ``static_bg`` is the static background pattern
    when ``background["static"] != "none"``), are area-binned to ``feature_shape`` and made zero
    mean and unit norm, so ``features @ features.T`` is the NCC. For circular-masked patterns
    (``masked``; None = detected per pattern) only the bins inside the mask count; the others
    are 0. A flat pattern gives the zero vector (NCC 0 with everything).
    """
    from kdeconv.preprocess import circular_mask, detect_masked
    from kdeconv.preprocess.mask import window_patterns
    from kdeconv.separate.chunk import preprocess_patterns
    from kdeconv.separate.neighbour_fit import preprocess_shape

    patterns = np.asarray(patterns)
    settings = background_settings(background)
    stack = window_patterns(patterns.reshape((-1,) + patterns.shape[-2:]), settings)
    sig_shape = stack.shape[-2:]  # a round screen's square when the recipe cuts to one
    ty, tx = feature_shape(sig_shape, side)
    if len(stack) == 0:
        return np.zeros((0, ty * tx), np.float32)
    use_mask = np.zeros(len(stack), bool)
    if min(sig_shape) >= 3:
        mask = circular_mask(sig_shape)
        use_mask = (detect_masked(stack, mask) if masked is None
                    else np.full(len(stack), bool(masked)))
    # large patterns are preprocessed area-averaged, as the neighbour fit preprocesses them
    work = preprocess_shape(sig_shape)
    corrected = preprocess_patterns(stack, settings, static_bg, masked=use_mask, work_shape=work)
    rows = _area_matrix(work[0], ty).astype(np.float32)
    cols_t = _area_matrix(work[1], tx).T.astype(np.float32).copy()

    if min(sig_shape) >= 3:
        mask = circular_mask(work)
        inside_fraction = (rows @ mask.astype(np.float32) @ cols_t).reshape(-1).astype(np.float64)
        inside = inside_fraction >= 0.5  # bins at least half inside the circle
    binned = np.empty((len(stack), ty * tx), np.float64)
    for i, pattern in enumerate(corrected):
        # One pattern at a time: the same matrix shapes whatever the chunk, so the same bits.
        if use_mask[i]:
            pattern = pattern * mask
        binned[i] = (rows @ pattern @ cols_t).reshape(-1)
    flat = binned
    if use_mask.any():
        # Masked patterns: the inside bins, averaged over their inside part; the others 0.
        part = np.where(inside, binned[use_mask] / np.where(inside, inside_fraction, 1.0), 0.0)
        part -= part.sum(1, keepdims=True) / inside.sum()
        flat[use_mask] = np.where(inside, part, 0.0)
    unmasked = ~use_mask
    flat[unmasked] -= flat[unmasked].mean(1, keepdims=True)
    norm = np.sqrt((flat * flat).sum(1, keepdims=True))
    flat = np.divide(flat, norm, out=np.zeros_like(flat), where=norm > 1e-12)
    return flat.astype(np.float32)


def _as_grid(array: np.ndarray, trailing: int) -> np.ndarray:
    """A line scan ``(n, ...)`` as a one-row map ``(1, n, ...)``."""
    array = np.asarray(array)
    return array[None] if array.ndim == trailing + 1 else array


def _pair_slices(dy: int, dx: int, ny: int, nx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """``(here, there)``: the pixels p whose neighbour p + (dy, dx) lies in the map, and those
    neighbours (``dy >= 0``)."""
    here = (slice(0, ny - dy), slice(max(-dx, 0), nx - max(dx, 0)))
    there = (slice(dy, ny), slice(max(dx, 0), nx + min(dx, 0)))
    return here, there


def neighbour_similarity(features: np.ndarray, reach: int = 2) -> np.ndarray:
    """NCC of every pixel with its neighbours right, down, down-right and down-left, one step
    away (channels 0-3) and, with ``reach=2``, two steps away (channels 4-7).

    ``features`` (ny, nx, k) (or a line scan (n, k), taken as one row) of unit-norm vectors.
    Returns float32 (ny, nx, 4 * reach) in the order of ``NEIGHBOUR_OFFSETS``; NaN where the
    neighbour lies outside the map. With the reverse directions (a neighbour's channel) this
    covers all 8 pixels around each pixel, and the 8 two steps away.
    """
    if reach not in (1, 2):
        raise ValueError(f"reach must be 1 or 2, got {reach}")
    f = _as_grid(features, 1)
    if f.ndim != 3:
        raise ValueError(f"features must be (ny, nx, k) or (n, k), got shape {np.shape(features)}")
    ny, nx, _ = f.shape
    out = np.full((ny, nx, 4 * reach), np.nan, np.float32)
    for c, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS[:4 * reach]):
        here, there = _pair_slices(dy, dx, ny, nx)
        a, b = f[here], f[there]
        # Row by row: float64 sums without an (ny, nx, k) float64 temporary.
        for i in range(a.shape[0]):
            out[here[0].start + i, here[1], c] = np.einsum("jk,jk->j", a[i], b[i], dtype=np.float64)
    return out


def _around(similarity: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(ny, nx, 2C) NCC with every neighbour in both directions (NaN outside the map), and the
    (dy, dx) of each channel: the C forward channels, then their reverses."""
    ny, nx, channels = similarity.shape
    offsets = list(NEIGHBOUR_OFFSETS[:channels])
    out = np.full((ny, nx, 2 * channels), np.nan, np.float32)
    out[..., :channels] = similarity
    for c, (dy, dx) in enumerate(offsets):
        here, there = _pair_slices(dy, dx, ny, nx)
        out[there + (channels + c,)] = similarity[here + (c,)]  # p's reverse = (p - offset)'s forward
    return out, offsets + [(-dy, -dx) for dy, dx in offsets]


def _adjacent(offsets: list[tuple[int, int]]) -> np.ndarray:
    return np.array([max(abs(dy), abs(dx)) == 1 for dy, dx in offsets])


def relative_similarity(similarity: np.ndarray) -> np.ndarray:
    """Neighbour NCCs corrected for each pattern's own noise: ``NCC_pq / sqrt(level_p * level_q)``.

    A pattern's ``level`` is its highest NCC with an adjacent pattern: the NCC of two noisy
    copies of its own pattern wherever it has a same-grain neighbour. Noise lowers every NCC of
    a pattern by the same factor, and grains of low band contrast lose more, so the raw NCC of
    a noisy grain's interior can fall below that of a clean grain's boundary. The ratio is about
    the NCC of the clean patterns (1 inside a grain, about 0.7-0.8 for a 50/50 mixture against
    one of its grains), so one bar suits every grain of the map. Same shape as ``similarity``
    (values capped at 1); NaN stays NaN.
    """
    sim = _as_grid(similarity, 1).astype(np.float64)
    ny, nx, channels = sim.shape
    around, offsets = _around(sim)
    near = np.where(np.isnan(around), -np.inf, around)[..., _adjacent(offsets)]
    level = near.max(axis=-1)
    level = np.where(level > 1e-6, level, np.nan)  # no positive NCC: nothing to correct by
    out = np.full(sim.shape, np.nan)
    for c, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS[:channels]):
        here, there = _pair_slices(dy, dx, ny, nx)
        out[here + (c,)] = sim[here + (c,)] / np.sqrt(level[here] * level[there])
    out = np.minimum(out, 1.0)
    return out.astype(np.float32).reshape(np.shape(similarity))


def adaptive_threshold(similarity: np.ndarray, *, relative: float = 0.85, spread: float = 4.0) -> float:
    """The NCC above which two neighbours count as one grain, derived from the map itself.

    Absolute NCC values depend on the dose, the pattern size and the detector, so the bar comes
    from the map's own NCCs of adjacent pairs (channels 0-3; best the ``relative_similarity``).
    Most adjacent pairs lie inside a grain, and their NCC is the map's "same pattern under this
    noise" level. Rule:

    1. ``level`` = the median of the upper half of the NCCs (their 75th percentile: inside a
       grain as long as at least half the pairs are, whatever the boundary pairs do);
    2. ``noise`` = the robust spread of that upper half (1.4826 x its median absolute deviation);
    3. threshold = ``max(relative * level, level - spread * noise)``.

    The second term follows the noise scatter of same-grain pairs: for Gaussian scatter it sits
    1.7 standard deviations below their mean, so about 5 % of same-grain pairs fall under it
    (the core and border rules of ``segment_grains`` tolerate that), and mixtures, a little
    less similar, fall under it far more often. The first term caps how far noise can pull the
    bar down, keeping it above the NCC of a 50/50 mixture with either of its grains (about
    0.7-0.8). Measured on simulated Ni maps (relative NCC, 48x48 px): 0.975 at 1500 counts
    peak, 0.88 at 300, 0.79 at 100.
    """
    values = np.asarray(similarity, np.float64)[..., :4]  # adjacent pairs only
    values = values[np.isfinite(values)]
    # Relative NCCs of exactly 1 are pairs that set both their levels: 1 by construction, they
    # carry no scatter (in a line scan most pairs are such). Count only the others.
    informative = values[values < 1.0 - 1e-6]
    values = informative if informative.size else values
    if values.size == 0:
        return float("nan")
    upper = values[values >= np.median(values)]
    level = float(np.median(upper))
    noise = 1.4826 * float(np.median(np.abs(upper - level)))
    return max(relative * level, level - spread * noise)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find_all(self) -> np.ndarray:
        parent = self.parent
        while True:  # pointer jumping until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand

    def union_edges(self, a: np.ndarray, b: np.ndarray) -> None:
        # Vectorised rounds: hook the larger root onto the smaller until no edge joins two roots.
        while a.size:
            roots = self.find_all()
            self.parent = roots
            ra, rb = roots[a], roots[b]
            keep = ra != rb
            a, b, ra, rb = a[keep], b[keep], ra[keep], rb[keep]
            if not a.size:
                return
            lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
            target = np.full(len(roots), np.iinfo(np.int64).max)
            np.minimum.at(target, hi, lo)
            hooked = target < np.iinfo(np.int64).max
            self.parent[hooked] = target[hooked]


def segment_grains(similarity: np.ndarray, threshold: float | None = None, *,
                   min_size: int = 9, core_fraction: float | tuple[float, ...] = (0.75, 0.5)
                   ) -> np.ndarray:
    """Grain labels int32 (ny, nx): connected regions of mutually similar patterns; -1 elsewhere.

    ``similarity`` is (ny, nx, C) as ``neighbour_similarity`` gives it (a line scan's (n, C) is
    one row), best ``relative_similarity``; ``threshold`` None takes ``adaptive_threshold``.
    Like DBSCAN on the scan grid:

    - a *core* pixel reaches ``threshold`` with at least ``core_fraction`` of all its in-map
      neighbours (both steps when C = 8): grain interiors are core, mixtures and boundary pixels
      are not, so no chain of links can cross a boundary through a mixture;
    - adjacent core pixels linked by NCC >= ``threshold`` form regions (union-find);
    - a non-core pixel joins the region of its most similar adjacent core pixel if that NCC
      reaches ``threshold``, but links nothing.

    Several fractions make passes: each later, more lenient pass finds grains among the pixels
    still unlabelled (thin grains, whose pixels all see another grain two steps away), counting
    a labelled neighbour as dissimilar, so it never grows or joins the regions found before.
    Regions under ``min_size`` pixels and unlinked pixels get -1. Labels are 0, 1, ... in the
    raster order of each region's first pixel, so they depend on the similarity only.
    """
    sim = _as_grid(similarity, 1)
    if sim.ndim != 3 or sim.shape[-1] not in (4, 8):
        raise ValueError(f"similarity must be (ny, nx, 4) or (ny, nx, 8), got shape {np.shape(similarity)}")
    if threshold is None:
        threshold = adaptive_threshold(sim)
    fractions = (core_fraction,) if np.isscalar(core_fraction) else tuple(core_fraction)
    ny, nx, _ = sim.shape
    around, offsets = _around(sim)
    high = np.nan_to_num(around, nan=-np.inf) >= threshold
    in_map = np.isfinite(around)
    labels = np.full((ny, nx), -1, np.int64)
    for fraction in fractions:
        free = labels < 0
        found = _segment_pass(high, in_map, around, offsets, free, float(fraction), threshold)
        found = _drop_small(found, min_size)
        labels[found >= 0] = found[found >= 0] + labels.max(initial=-1) + 1
    # Renumber 0, 1, ... by the raster order of each region's first pixel.
    flat = labels.reshape(-1)
    present, first = np.unique(flat, return_index=True)
    order = np.argsort(np.where(present >= 0, first, -1), kind="stable")
    relabel = np.full(present.max(initial=-1) + 2, -1, np.int64)
    kept = present[order][present[order] >= 0]
    relabel[kept + 1] = np.arange(len(kept))
    return relabel[flat + 1].reshape(ny, nx).astype(np.int32)


def _neighbour_of(grid: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``out[p] = grid[p + (dy, dx)]``, ``fill`` where that lies outside the map."""
    ny, nx = grid.shape
    out = np.full(grid.shape, fill, grid.dtype)
    here, there = _pair_slices(dy, dx, ny, nx) if dy >= 0 else _pair_slices(-dy, -dx, ny, nx)[::-1]
    out[here] = grid[there]
    return out


def _segment_pass(high, in_map, around, offsets, free, fraction, threshold) -> np.ndarray:
    """One DBSCAN pass among the ``free`` pixels: region numbers (any order) or -1."""
    ny, nx = free.shape
    # A neighbour outside ``free`` counts against the pixel: it belongs to another region.
    high_free = high & np.stack([_neighbour_of(free, dy, dx, False) for dy, dx in offsets], axis=-1)
    core = free & (high_free.sum(-1) >= fraction * in_map.sum(-1)) & high_free.any(-1)
    index = np.arange(ny * nx).reshape(ny, nx)
    sources, targets = [], []
    for c, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS[:4]):
        here, there = _pair_slices(dy, dx, ny, nx)
        linked = high[here + (c,)] & core[here] & core[there]
        sources.append(index[here][linked])
        targets.append(index[there][linked])
    uf = _UnionFind(ny * nx)
    uf.union_edges(np.concatenate(sources), np.concatenate(targets))
    labels = np.where(core, uf.find_all().reshape(ny, nx), -1)
    # Border pixels: the region of the most similar adjacent core pixel (first channel on ties).
    best = np.full((ny, nx), -np.inf)
    best_label = np.full((ny, nx), -1, np.int64)
    for c, (dy, dx) in enumerate(offsets):
        if max(abs(dy), abs(dx)) != 1:
            continue
        other = _neighbour_of(labels, dy, dx, -1)
        ncc = np.nan_to_num(around[..., c], nan=-np.inf)
        better = (other >= 0) & (ncc >= threshold) & (ncc > best)
        best[better] = ncc[better]
        best_label[better] = other[better]
    border = free & ~core & (best_label >= 0)
    labels[border] = best_label[border]
    return labels


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Regions renumbered 0, 1, ...; those under ``min_size`` pixels become -1."""
    present, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = (present >= 0) & (counts >= max(1, int(min_size)))
    relabel = np.full(len(present), -1, np.int64)
    relabel[keep] = np.arange(int(keep.sum()))
    return relabel[inverse.reshape(-1)].reshape(labels.shape)


def interior_distance(labels: np.ndarray, *, edge_is_boundary: bool = True) -> np.ndarray:
    """float32 (ny, nx): Euclidean distance (pixels) from each labelled pixel to the nearest
    pixel of another label or an unlabelled one (-1); unlabelled pixels get 0.

    With ``edge_is_boundary`` the scan's edge counts as one more boundary one pixel outside the
    map (an unseen grain may lie just beyond it, and edge pixels have half the neighbours to
    vouch for them); without it a label filling the whole map is inf away from everything.
    A line scan (n,) is one row.
    """
    from scipy.ndimage import distance_transform_edt, find_objects

    grid = _as_grid(labels, 0).astype(np.int64)
    # The edge lies beyond the scanned axes only (a line scan has no edge across the line).
    widths = [(int(edge_is_boundary and n > 1),) * 2 for n in grid.shape]
    grid = np.pad(grid, widths, constant_values=-1)
    out = np.zeros(grid.shape, np.float32)
    for label, box in enumerate(find_objects(grid + 1)):  # label + 1: find_objects skips -1 (0)
        if box is None:
            continue
        # Padded by one pixel: every pixel beyond the padded box is farther than some pixel of
        # the ring, and the ring is outside the label's bounding box, so the crop is exact.
        pad = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, grid.shape))
        own = grid[pad] == label
        out[pad][own] = np.inf if own.all() else distance_transform_edt(own)[own]
    out = out[tuple(slice(w[0], n - w[1]) for (w, n) in zip(widths, out.shape))]
    return out.reshape(np.shape(labels))


def pure_candidates(labels: np.ndarray, interior: np.ndarray, similarity: np.ndarray,
                    threshold: float, *, min_distance: float = 2.0,
                    predicted_minority: np.ndarray | None = None,
                    max_minority: float = 0.1) -> np.ndarray:
    """bool (ny, nx): grain-interior pixels, the candidates for pure patterns.

    A candidate has a grain label, lies at least ``min_distance`` px from any other region
    (``interior``), and is similar to the neighbours of its own region (adjacent, and two steps
    away when ``similarity`` has 8 channels): their mean NCC reaches ``threshold`` and none
    lies below ``threshold - (1 - threshold)``. With
    ``predicted_minority`` (ny, nx) (a base model's minority weight), pixels predicted above
    ``max_minority`` are dropped too: the second vote.
    """
    lab = _as_grid(labels, 0)
    sim = _as_grid(similarity, 1)
    dist = _as_grid(interior, 0)
    ny, nx = lab.shape
    around, offsets = _around(sim)
    # Only neighbours of the same region count: one across a boundary is the distance test's
    # business, while a dissimilar one inside the region marks a gradual mixture that no
    # boundary shows (a beam wider than the step).
    counts = np.isfinite(around)
    for c, (dy, dx) in enumerate(offsets):
        same = np.zeros((ny, nx), bool)
        here, there = _pair_slices(dy, dx, ny, nx) if dy >= 0 else _pair_slices(-dy, -dx, ny, nx)[::-1]
        same[here] = lab[here] == lab[there]
        counts[..., c] &= same
    # The mean of many pairs shows a systematic deficit (a mixture) through the noise that
    # single pairs dip under the bar with; no pair may fall far below it either.
    n_pairs = counts.sum(-1)
    mean = np.where(counts, np.nan_to_num(around, nan=0.0), 0.0).sum(-1) / np.maximum(n_pairs, 1)
    lowest = np.where(counts, np.nan_to_num(around, nan=np.inf), np.inf).min(-1)
    similar = (mean >= threshold) & (lowest >= threshold - (1.0 - threshold))
    has_neighbour = counts.any(axis=-1)
    candidate = (lab >= 0) & (dist >= min_distance) & similar & has_neighbour
    if predicted_minority is not None:
        minority = _as_grid(np.asarray(predicted_minority, np.float64), 0)
        if minority.shape != lab.shape:
            raise ValueError(f"predicted_minority {np.shape(predicted_minority)} does not match "
                             f"the map {np.shape(labels)}")
        candidate &= np.nan_to_num(minority, nan=np.inf) <= max_minority
    return candidate


def _spread_pick(points: np.ndarray, depth: np.ndarray, count: int, min_spacing: float,
                 deep_fraction: float, rng: np.random.Generator) -> list[int]:
    """Farthest-point sampling among the deep points (depth >= ``deep_fraction`` of the deepest):
    start at the deepest point, then the farthest from those taken; no two closer than
    ``min_spacing``. Ties go by a seeded shuffle."""
    order = rng.permutation(len(points))
    pts, dep = points[order].astype(np.float64), depth[order]
    start = int(np.argmax(dep))  # first maximum in the shuffled order
    chosen = [start]
    gap = np.sqrt(((pts - pts[start]) ** 2).sum(1))
    gap[dep < deep_fraction * dep[start]] = -np.inf
    while len(chosen) < count:
        nxt = int(np.argmax(gap))
        if gap[nxt] < min_spacing:
            break
        chosen.append(nxt)
        gap = np.minimum(gap, np.sqrt(((pts - pts[nxt]) ** 2).sum(1)))
    return [int(order[i]) for i in chosen]


def choose_pure(labels: np.ndarray, interior: np.ndarray, similarity: np.ndarray, n_max: int,
                per_grain: int, seed: int, *, threshold: float | None = None,
                min_distance: float = 2.0, min_spacing: float = 2.0, deep_fraction: float = 0.7,
                predicted_minority: np.ndarray | None = None,
                max_minority: float = 0.1) -> np.ndarray:
    """Flat (row-major) indices of a diverse set of pure patterns, int64, in pick order.

    Candidates are ``pure_candidates``. Each grain gives up to ``per_grain`` of them, spread
    through its deep part (farthest-point sampling from its deepest pixel among the candidates
    at least ``deep_fraction`` as far from a boundary as that one, never two within
    ``min_spacing`` px: deeper pixels are purer when the beam is wide). Grains take turns (one
    pattern from every grain, then a second ...), so the cap ``n_max`` keeps as many grains as
    possible; grains with the most candidates go first in each round. The same inputs and
    ``seed`` give the same indices (ties are broken by ``np.random.default_rng([seed, 7,
    grain])``).
    """
    lab = _as_grid(labels, 0)
    sim = _as_grid(similarity, 1)
    if threshold is None:
        threshold = adaptive_threshold(sim)
    dist = _as_grid(interior, 0)
    candidate = pure_candidates(lab, dist, sim, threshold, min_distance=min_distance,
                                predicted_minority=predicted_minority, max_minority=max_minority)
    nx = lab.shape[1]
    flat = np.flatnonzero(candidate)
    if flat.size == 0 or n_max <= 0 or per_grain <= 0:
        return np.zeros(0, np.int64)
    grains = lab.reshape(-1)[flat]
    order = np.argsort(grains, kind="stable")  # candidates grouped by grain, raster order inside
    flat, grains = flat[order], grains[order]
    depth = np.minimum(dist.reshape(-1)[flat], np.float32(1e6))
    labels_found, starts = np.unique(grains, return_index=True)
    picks: list[np.ndarray] = []
    sizes = []
    groups = zip(labels_found, np.split(flat, starts[1:]), np.split(depth, starts[1:]))
    for g, members, member_depth in groups:
        points = np.stack([members // nx, members % nx], axis=1)
        rng = np.random.default_rng([int(seed), 7, int(g)])
        take = _spread_pick(points, member_depth, int(per_grain), min_spacing, deep_fraction, rng)
        picks.append(members[take])
        sizes.append(len(members))
    # Round robin over grains, most candidates first (ties: lower label first).
    grain_order = np.lexsort((np.arange(len(sizes)), -np.asarray(sizes)))
    out: list[int] = []
    for round_ in range(int(per_grain)):
        for g in grain_order:
            if round_ < len(picks[g]) and len(out) < n_max:
                out.append(int(picks[g][round_]))
    return np.asarray(out, np.int64)


def segment_contacts(labels: np.ndarray, segments, radius: int = 3,
                     nearest: int | None = None) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Where two of ``segments`` (grain labels of ``labels``) meet, read as the neighbour fit reads
    a pixel between two grains: ``[(i, j, flat_i, flat_j)]``, i < j, for each pair with pixels of
    both within ``radius`` steps (chessboard) of one pixel: the one whose window holds the most
    of the scarcer segment, midway between them; ``flat_i`` and ``flat_j`` are the row-major indices of
    each segment's pixels within ``radius`` of it, its ``nearest`` ones (None: all)."""
    from scipy.ndimage import distance_transform_cdt, distance_transform_edt, uniform_filter

    lab = np.asarray(labels)
    ny, nx = lab.shape
    segs = sorted({int(s) for s in segments})
    boxes = {}
    for s in segs:
        ys, xs = np.nonzero(lab == s)
        if len(ys):
            boxes[s] = (ys.min(), ys.max(), xs.min(), xs.max())
    contacts = []
    for k, i in enumerate(segs):
        for j in segs[k + 1:]:
            if i not in boxes or j not in boxes:
                continue
            bi, bj = boxes[i], boxes[j]
            if (bi[0] > bj[1] + 2 * radius or bj[0] > bi[1] + 2 * radius
                    or bi[2] > bj[3] + 2 * radius or bj[2] > bi[3] + 2 * radius):
                continue
            y0, y1 = max(0, min(bi[0], bj[0]) - radius), min(ny, max(bi[1], bj[1]) + radius + 1)
            x0, x1 = max(0, min(bi[2], bj[2]) - radius), min(nx, max(bi[3], bj[3]) + radius + 1)
            crop = lab[y0:y1, x0:x1]
            reach = [distance_transform_cdt(crop != s, metric="chessboard") <= radius for s in (i, j)]
            both = reach[0] & reach[1]
            if not both.any():
                continue
            # the best-read meeting pixel: most pixels of the scarcer segment in its window, then
            # midway between them, then nearest both, then raster order
            size = 2 * radius + 1
            counts = np.minimum(*(uniform_filter((crop == s).astype(np.float64), size, mode="constant")
                                  for s in (i, j)))
            far = [distance_transform_edt(crop != s) for s in (i, j)]
            where = np.flatnonzero(both)
            order = np.lexsort((where, (far[0] + far[1]).flat[where], np.abs(far[0] - far[1]).flat[where],
                                -np.round(counts.flat[where] * size * size)))
            py, px = np.unravel_index(int(where[order[0]]), crop.shape)
            wy = slice(max(0, py - radius), py + radius + 1)
            wx = slice(max(0, px - radius), px + radius + 1)
            flats = []
            for s in (i, j):
                ys, xs = np.nonzero(crop[wy, wx] == s)
                ys, xs = ys + wy.start, xs + wx.start
                if nearest is not None and len(ys) > nearest:
                    order = np.argsort((ys - py) ** 2 + (xs - px) ** 2, kind="stable")[:nearest]
                    ys, xs = ys[order], xs[order]
                flats.append(((ys + y0) * nx + xs + x0).astype(np.int64))
            contacts.append((i, j, flats[0], flats[1]))
    return contacts


def crystal_groups(segments: np.ndarray, joined: list[tuple[int, int]]) -> np.ndarray:
    """int64 like ``segments``: one id per crystal, segments ``joined`` in pairs (transitively)
    sharing one (the smallest segment label of the group)."""
    segments = np.asarray(segments, np.int64)
    uniq = np.unique(segments)
    if not joined or not len(uniq):
        return segments.copy()
    pos = {int(s): k for k, s in enumerate(uniq)}
    pairs = [(pos[i], pos[j]) for i, j in joined if i in pos and j in pos]
    uf = _UnionFind(len(uniq))
    if pairs:
        a, b = (np.array(v, np.int64) for v in zip(*pairs))
        uf.union_edges(a, b)
    roots = uf.find_all()
    return uniq[roots][np.searchsorted(uniq, segments)]
