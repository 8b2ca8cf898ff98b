"""The neighbour fit over a separated map: ``kdeconv.separate.neighbour_fit`` tile by tile.

Runs after the in-grain claims, whose segmentation names the grains. Each task reads one tile of
the map (whole chunks, ``fit_tiles``) with a halo of the fit's reach, fits its pixels near
boundaries and writes, where a pair of nearby grains explains the pattern, B (the second grain's
interior mean), the weights and, where the model's A was the second grain's crystal, A into the
separated store, with the ``neighbour_pair`` mask. Those pixels leave the ``in_grain`` mask: the
in-grain bar is the model's reading of deep interiors, and the fit's weights have passed the
fit's own tests. Deep interiors are never written, so the in-grain bar measured from them stays
what it was, and a rerun after an interruption writes the same values again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdeconv.separate.neighbour_fit import (
    DEFAULT_SETTINGS,
    NeighbourFitSettings,
    TileFit,
    fit_chunk,
    fit_shape_for,
    fit_window,
    grain_coherence,
    nearest_for,
    preprocess_shape,
    reach,
    seen_patterns,
    shared_direction,
    single_pattern_signal,
    vectors_of,
)

__all__ = ["NEIGHBOUR_PAIR", "settings_for", "skip_reason", "write_neighbour_fit", "write_fit_result",
           "fit_in_memory", "describe_neighbour_fit", "map_reading", "MapReading", "SIGNAL_WINDOW"]

NEIGHBOUR_PAIR = "neighbour_pair"


def settings_for(config) -> NeighbourFitSettings:
    """The fit's settings from ``SeparateConfig.neighbour_fit`` (its reach and minority bar; the
    rest are the measured defaults)."""
    from dataclasses import replace

    return replace(DEFAULT_SETTINGS, radius=config.radius, far_radius=config.far_radius,
                   min_minority=config.min_minority)


def skip_reason(nav_shape: tuple[int, ...], claims) -> str | None:
    """Why a map gets no neighbour fit, or None."""
    if len(nav_shape) != 2:
        return "needs a 2-D map (a line scan or a stack has no neighbours)"
    if claims is None or claims.labels is None:
        return "the map's grains were not found (in-grain claims off, or too few deep interiors)"
    return None


# The map's signal share is read on one window at its centre (a chunking of its own would change
# the fit's decisions at their margins): this many scan pixels a side at most.
SIGNAL_WINDOW = 24


@dataclass(frozen=True)
class MapReading:
    """What the fit reads once per map, on the ``SIGNAL_WINDOW`` square at its centre: a single
    pattern's ``signal`` share, the ``shared`` direction of its grains (with its share), the
    grains' ``coherence`` (``grain_coherence``), which sets ``nearest``, and the pixels the fit
    compares (``window``, ``fit_window``: None, all)."""

    signal: float
    shared: np.ndarray | None
    shared_share: float
    coherence: float
    nearest: int | None
    window: np.ndarray | None = None


def map_reading(patterns, blank: np.ndarray | None, labels: np.ndarray, interior: np.ndarray,
                background: dict[str, Any], static_bg,
                settings: NeighbourFitSettings = DEFAULT_SETTINGS) -> MapReading:
    """The map's ``single_pattern_signal``, ``shared_direction`` and ``grain_coherence``
    (``blank``: the map's blank frames, None: found in the window; ``interior``: px from the
    nearest boundary). The coherence is read on deep interiors (``deep_px``): a small grain's
    pixels 3 steps apart often include one beside a boundary, whose beam touches the next grain,
    and flat grains would read as bent (Mg at 60 px: 0.967 over all pixels, 0.996 deep)."""
    from kdeconv.separate.chunk import blank_frames

    ny, nx = labels.shape
    hy, hx = min(ny, SIGNAL_WINDOW), min(nx, SIGNAL_WINDOW)
    centre = (slice((ny - hy) // 2, (ny - hy) // 2 + hy), slice((nx - hx) // 2, (nx - hx) // 2 + hx))
    raw = np.asarray(patterns[centre])
    blank = blank_frames(raw) if blank is None else np.asarray(blank[centre], bool)
    pre = seen_patterns(raw, blank, background, static_bg)
    window = fit_window(pre[~blank], fit_shape_for(pre.shape[-2:])) if (~blank).any() else None
    fit = vectors_of(pre, ~blank, window)
    labels, members = labels[centre], (labels[centre] >= 0) & ~blank
    coherence = grain_coherence(fit, labels, members & (interior[centre] >= settings.deep_px))
    return MapReading(single_pattern_signal(fit, labels, members), *shared_direction(fit, labels, members),
                      coherence, nearest_for(coherence, settings), window)


def _compared(window: np.ndarray | None) -> float:
    """The share of the fit's pattern pixels it compares."""
    return 1.0 if window is None else round(float(np.mean(window)), 4)


# A tile of the fit is whole chunks, merged along each axis while its core is under
# ``TILE_REACHES`` reaches and its patterns with their halo, raw and preprocessed, stay within
# ``TILE_BYTES``: a halo of 6 steps around chunks of a few rows of large patterns (3 rows of 480
# px) read and preprocessed each pattern 5 times. The fit's answer does not depend on the tiling
# (tested).
TILE_REACHES = 4
TILE_BYTES = 512 * 2**20


def fit_tiles(nav_chunks, radius: int, pattern_bytes: int) -> tuple[tuple[int, ...], ...]:
    """``nav_chunks`` merged into the fit's tiles (see ``TILE_REACHES``)."""
    merged = [list(c) for c in nav_chunks]
    for axis in (0, 1):
        out, size = [], 0
        for c in merged[axis]:
            other = max(merged[1 - axis]) + 2 * radius
            if out and size < TILE_REACHES * radius and \
                    (size + c + 2 * radius) * other * pattern_bytes <= TILE_BYTES:
                out[-1] += c
            else:
                out.append(c)
            size = out[-1]
        if len(out) > 1 and out[-1] < radius and \
                (out[-2] + out[-1] + 2 * radius) * other * pattern_bytes <= TILE_BYTES:
            out[-2:] = [out[-2] + out[-1]]  # no sliver of a tile inside a halo of its own
        merged[axis] = out
    return tuple(tuple(int(v) for v in c) for c in merged)


def _chunk_slices(nav_shape, nav_chunks, radius: int, pattern_bytes: int):
    """(core region in the map, halo region in the map, core inside the halo) for every tile of
    the fit (``fit_tiles``)."""
    nav_chunks = fit_tiles(nav_chunks, radius, pattern_bytes)
    starts = [np.cumsum((0,) + tuple(c))[:-1] for c in nav_chunks]
    for iy, y0 in enumerate(starts[0]):
        for ix, x0 in enumerate(starts[1]):
            y1, x1 = y0 + nav_chunks[0][iy], x0 + nav_chunks[1][ix]
            hy0, hx0 = max(0, y0 - radius), max(0, x0 - radius)
            hy1, hx1 = min(nav_shape[0], y1 + radius), min(nav_shape[1], x1 + radius)
            yield ((slice(int(y0), int(y1)), slice(int(x0), int(x1))),
                   (slice(int(hy0), int(hy1)), slice(int(hx0), int(hx1))),
                   (slice(int(y0 - hy0), int(y1 - hy0)), slice(int(x0 - hx0), int(x1 - hx0))))


def _pattern_bytes(patterns) -> int:
    """What one pattern of a tile holds: raw, and preprocessed (float32, ``preprocess_shape``)."""
    sig = tuple(int(v) for v in patterns.shape[-2:])
    return int(np.prod(sig)) * np.dtype(patterns.dtype).itemsize + 4 * int(np.prod(preprocess_shape(sig)))


def _apply(fit: TileFit, a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> None:
    """Write ``fit`` into the core's ``a``, ``b`` and ``weights`` (in place, the map's dtype)."""
    from kdeconv.separate.chunk import to_dtype

    b[fit.second] = to_dtype(fit.b[fit.second], b.dtype)
    a[fit.a_replaced] = to_dtype(fit.a[fit.a_replaced], a.dtype)
    weights[fit.second] = fit.weights[fit.second]


def _counts(fit: TileFit) -> np.ndarray:
    return np.array([fit.fitted.sum(), fit.second.sum(), fit.a_replaced.sum()], np.int64)


def _fit_and_write(raw, blank, labels, interior, *, out_path: str, core, inner,
                   background, static_bg, settings, reading: MapReading) -> np.ndarray:
    import zarr

    group = zarr.open_group(out_path, mode="r+")
    a = group["A"][core]
    fit = fit_chunk(np.asarray(raw), np.asarray(blank), labels, interior, inner, a,
                    background, static_bg, settings, reading.signal, reading.shared, reading.nearest,
                    reading.window)
    b, weights = group["B"][core], group["weights"][core]
    _apply(fit, a, b, weights)
    if fit.second.any():
        group["B"][core], group["weights"][core] = b, weights
    if fit.a_replaced.any():
        group["A"][core] = a
    group[NEIGHBOUR_PAIR][core] = fit.second
    return _counts(fit)


def _record(counts: np.ndarray, seconds: float, settings: NeighbourFitSettings, reading: MapReading,
            labels: np.ndarray, pair: np.ndarray) -> dict[str, Any]:
    return {"fitted": int(counts[0]), "pairs": int(counts[1]), "a_replaced": int(counts[2]),
            "in_grain_cleared": int(((labels >= 0) & pair).sum()),
            "seconds": round(seconds, 2), "signal": round(reading.signal, 4),
            "shared": round(reading.shared_share, 4), "coherence": round(reading.coherence, 4),
            "nearest": reading.nearest, "compared": _compared(reading.window), "radius_px": settings.radius,
            "far_radius_px": settings.far_radius,
            "min_minority": settings.min_minority, "min_explained": settings.min_explained,
            "same_grain_ncc": settings.same_grain_ncc, "same_crystal_ncc": settings.same_crystal_ncc,
            "deep_px": settings.deep_px, "bent_coherence": settings.bent_coherence}


def write_neighbour_fit(group, out_path: str, patterns, background: dict[str, Any], static_bg, claims,
                        client=None,
                        progress: bool | None = None,
                        settings: NeighbourFitSettings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """Fit every chunk of the separated ``group`` (complete; written at ``out_path``) from the
    map's ``patterns`` (a Dask array chunked as the group) on ``client`` (None: Dask's current
    scheduler); records and returns
    ``group.attrs["neighbour_fit"]``."""
    import dask

    from kdeconv.cluster import compute
    from kdeconv.separate.claims import IN_GRAIN
    from kdeconv.separate.driver import BLANK

    nav_shape = tuple(group["weights"].shape[:-1])
    why = skip_reason(nav_shape, claims)
    if why is not None:
        record = {"skipped": why}
        group.attrs["neighbour_fit"] = record
        return record
    start = time.perf_counter()
    nav_chunks = patterns.chunks[:2]
    if NEIGHBOUR_PAIR not in group:
        group.create_array(NEIGHBOUR_PAIR, shape=nav_shape, chunks=group["weights"].chunks[:-1],
                           dtype="bool", fill_value=False)
    blank = np.asarray(group[BLANK][...], bool)
    reading = map_reading(patterns, blank, claims.labels, claims.interior, background, static_bg,
                          settings)
    task = dask.delayed(_fit_and_write, pure=True)
    tasks = [task(patterns[halo], blank[halo], claims.labels[halo],
                  claims.interior[halo], out_path=str(out_path), core=core, inner=inner,
                  background=background, static_bg=static_bg, settings=settings, reading=reading)
             for core, halo, inner in _chunk_slices(nav_shape, nav_chunks, reach(settings),
                                                    _pattern_bytes(patterns))]
    total = dask.delayed(sum)(tasks)
    counts = compute(client, total, progress=progress) if client is not None else total.compute()
    pair = np.asarray(group[NEIGHBOUR_PAIR][...], bool)
    if IN_GRAIN in group:
        # a kept pair passed the fit's own tests: the in-grain bar (the model's reading of deep
        # interiors) does not apply to the fit's weights
        group[IN_GRAIN][...] = np.asarray(group[IN_GRAIN][...], bool) & ~pair
    record = _record(np.asarray(counts), time.perf_counter() - start, settings, reading, claims.labels, pair)
    group.attrs["neighbour_fit"] = record
    return record


def write_fit_result(group, pair: np.ndarray | None, record: dict[str, Any]) -> None:
    """Write an in-memory fit's ``pair`` mask and ``record`` into ``group`` as ``write_neighbour_fit``
    does (its A, B, weights and ``in_grain`` written already)."""
    if pair is not None:
        if NEIGHBOUR_PAIR in group:
            del group[NEIGHBOUR_PAIR]
        group.create_array(NEIGHBOUR_PAIR, shape=pair.shape, chunks=group["weights"].chunks[:-1],
                           dtype="bool", fill_value=False)[...] = pair
    group.attrs["neighbour_fit"] = record


def fit_in_memory(patterns, a: np.ndarray | None, b: np.ndarray | None, weights: np.ndarray,
                  blank: np.ndarray, background: dict[str, Any], static_bg, claims, nav_chunks,
                  settings: NeighbourFitSettings = DEFAULT_SETTINGS):
    """The same fit over results in memory (``kdeconv.separate``'s): ``patterns`` the map (numpy
    or Dask), ``a`` and ``b`` the model's (None: the weights and pairs alone). Returns new ``a``,
    ``b``, ``weights``, the pair mask and the record (the inputs, ``None`` and the record where
    the map gets no fit)."""
    nav_shape = tuple(weights.shape[:-1])
    why = skip_reason(nav_shape, claims)
    if why is not None:
        return a, b, weights, None, {"skipped": why}
    start = time.perf_counter()
    a = None if a is None else a.copy()
    b = None if b is None else b.copy()
    weights = np.array(weights, copy=True)
    pair = np.zeros(nav_shape, bool)
    counts = np.zeros(3, np.int64)
    reading = map_reading(patterns, blank, claims.labels, claims.interior, background, static_bg,
                          settings)
    for core, halo, inner in _chunk_slices(nav_shape, nav_chunks, reach(settings), _pattern_bytes(patterns)):
        fit = fit_chunk(np.asarray(patterns[halo]), blank[halo], claims.labels[halo],
                        claims.interior[halo], inner, None if a is None else a[core], background,
                        static_bg, settings, reading.signal, reading.shared, reading.nearest,
                        reading.window)
        if a is not None:
            _apply(fit, a[core], b[core], weights[core])
        else:
            weights[core][fit.second] = fit.weights[fit.second]
        pair[core] = fit.second
        counts += _counts(fit)
    return a, b, weights, pair, _record(counts, time.perf_counter() - start, settings, reading,
                                        claims.labels, pair)


def describe_neighbour_fit(record: dict[str, Any]) -> str:
    """The summary line of the fit."""
    if "skipped" in record:
        return f"neighbour fit: none ({record['skipped']})"
    bent = (f"; the grains are bent (coherence {record['coherence']:.2f}): each is its "
            f"{record['nearest']} pixels nearest" if record.get("nearest") else "")
    compared = record.get("compared", 1.0)
    masked = (f"; compared on the {100 * compared:.0f}% of pattern pixels that vary, a mask left out"
              if compared < 1 else "")
    far = record.get("far_radius_px", 0)
    within = (f"{record['radius_px']} steps, {far} where no second grain is nearer"
              if far > record["radius_px"] else f"{record['radius_px']} steps")
    return (f"neighbour fit: {record['pairs']:,} of {record['fitted']:,} pixels between grains are "
            f"two nearby grains (B: the second grain's interior within {within}; weights from the "
            f"fit{bent}{masked}); {record['seconds']:.1f} s")
