"""Driver of the pure-pattern search on a map store (``--pure auto``), and user-given pure files.

``find_pure`` reads the map once for its mean pattern (the static background, as ``separate``
makes it) and once for the features: one ``map_blocks`` task per navigation chunk turns the raw
patterns into small feature vectors (``pure.pattern_features``, 1 KB a pattern). The features
come back to this process (2 GB for 2 million patterns); the neighbour similarity, the grains
and the chosen set are computed here on the (ny, nx) grid by the kernels of ``pure``.

``read_pure_file`` reads pure patterns that the user already knows (``--pure FILE``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.adapt.pure import (
    adaptive_threshold,
    background_settings,
    choose_pure,
    feature_shape,
    interior_distance,
    neighbour_similarity,
    pattern_features,
    pure_candidates,
    relative_similarity,
    segment_grains,
)
from kdeconv.errors import InputError

__all__ = ["PureSelection", "MapSegmentation", "find_pure", "segment_map", "map_features",
           "read_pure_file", "one_crystal_segments"]


@dataclass
class PureSelection:
    """The pure patterns chosen in a map, with the grains they come from."""

    indices: np.ndarray        # int64 (n_chosen,): flat row-major indices into the navigation
    grains: np.ndarray         # int32 (n_chosen,): the grain label of each chosen pattern
    labels: np.ndarray         # int32 nav shape: grain label per pixel, -1 for boundaries/mixtures
    nav_shape: tuple[int, ...]
    n_grains: int              # grains with at least one pure candidate
    n_regions: int             # grains (regions of similar patterns) found in all
    n_candidates: int          # grain-interior pixels that passed every test
    threshold: float           # the noise-corrected NCC bar derived from this map
    background: dict[str, Any] = field(default_factory=dict)  # preprocessing of the features
    seconds: float = 0.0

    @property
    def n_chosen(self) -> int:
        return int(len(self.indices))

    def positions(self) -> np.ndarray:
        """int64 (n_chosen, nav_ndim): the chosen pixels as (row, col) (or (i,) for a line scan)."""
        return np.stack(np.unravel_index(self.indices, self.nav_shape), axis=1).astype(np.int64)

    def summary(self) -> str:
        return (f"find pure: {self.n_chosen} pure patterns from {len(np.unique(self.grains))} grains "
                f"({self.n_candidates} candidates in {self.n_grains} of {self.n_regions} grains "
                f"found, NCC threshold {self.threshold:.3f}) in {self.seconds:.1f} s")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for provenance (``adapt.json``): the chosen patterns and the counts."""
        return {"indices": self.indices.tolist(), "grains": self.grains.tolist(),
                "positions": self.positions().tolist(), "nav_shape": list(self.nav_shape),
                "n_grains": self.n_grains, "n_regions": self.n_regions,
                "n_candidates": self.n_candidates, "n_chosen": self.n_chosen,
                "threshold": round(float(self.threshold), 6), "background": self.background,
                "seconds": round(float(self.seconds), 3)}


@dataclass
class MapSegmentation:
    """A map's grains, found from its patterns alone (no indexing, phase or PC)."""

    labels: np.ndarray         # int32 nav shape: grain label per pixel, -1 for boundaries/mixtures
    interior: np.ndarray       # float32 nav shape: px from the nearest other grain, boundary or edge
    similarity: np.ndarray     # the neighbour similarity the grains were cut from
    threshold: float           # the noise-corrected NCC bar derived from this map
    background: dict[str, Any] = field(default_factory=dict)

    @property
    def in_grain(self) -> np.ndarray:
        """bool nav shape: pixels inside a grain (not a boundary or mixture)."""
        return self.labels >= 0


# --------------------------------------------------------------------------- task (runs on workers)

def _features_block(block: np.ndarray, *, background: dict, static_bg: np.ndarray | None,
                    side: int) -> np.ndarray:
    """One navigation chunk (..., sy, sx) -> features (..., k) float32."""
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        raise InputError("the map holds NaN or inf values; fix or mask them before finding pure patterns")
    nav = block.shape[:-2]
    feats = pattern_features(block.reshape((-1,) + block.shape[-2:]), background, static_bg, side=side)
    return feats.reshape(nav + (feats.shape[-1],))


# --------------------------------------------------------------------------- client side

def _compute(obj, client, progress):
    if client is None:
        return obj.compute()
    from kdeconv.cluster import compute

    return compute(client, obj, progress=progress)


def map_features(map_store_path, *, background: str | dict = "auto", side: int = 16,
                 static_bg: np.ndarray | None = None, client=None,
                 progress: bool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Feature vectors of every pattern of a map store (a path) or of a numpy or Dask array
    (..., sy, sx): float32 (ny, nx, k) (or (n, k)), and the background settings they were made
    with. ``static_bg``: the map's static background when the caller has it already (``separate``
    does); None: made from the map mean here (one more read of the map)."""
    import dask
    import dask.array as da
    import zarr

    from kdeconv.config.separate import BackgroundConfig
    from kdeconv.io.store import open_store
    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.preprocess.mask import screen_shape
    from kdeconv.separate.inputs import resolve_background

    if isinstance(map_store_path, (str, Path)):
        path = Path(map_store_path)
        group = open_store(path, kind="map", arrays=("patterns",))
        src = group["patterns"]
        where = str(path)
    else:
        path, where = None, "the patterns"
        src = da.asarray(map_store_path)
        src = src.rechunk(src.chunks[:-2] + ((src.shape[-2],), (src.shape[-1],)))
    if src.ndim not in (3, 4):
        raise InputError(f"{where}: patterns must be (n, sy, sx) or (ny, nx, sy, sx), got {src.shape}")
    nav_ndim = src.ndim - 2
    if int(np.prod(src.shape[:nav_ndim])) < 2:
        raise InputError(f"{where} holds {int(np.prod(src.shape[:nav_ndim]))} pattern(s); finding "
                         "pure patterns needs a map of several grains")
    if path is not None:
        patterns = da.from_zarr(zarr.open_array(str(path.resolve() / "patterns"), mode="r"),
                                chunks=src.chunks[:nav_ndim] + src.shape[-2:])
    else:
        patterns = src
    nav_axes = tuple(range(nav_ndim))
    if isinstance(background, str) and background != "auto":
        raise InputError(f"background must be 'auto' or a dict of background settings, got {background!r}")
    if background == "auto":  # as separate decides it for this map
        settings = background_settings(resolve_background(src, BackgroundConfig())[0])
    else:
        settings = background_settings(background)
    if settings["static"] == "none" or settings.get("mode") == "processed":
        static_bg = None
    elif static_bg is None:
        mean = _compute(patterns.mean(axis=nav_axes, dtype=np.float64), client, progress)
        static_bg = static_background_from_mean(mean, settings["static_smooth_std"], background=settings)

    k = int(np.prod(feature_shape(screen_shape(src.shape[-2:], settings), side)))
    features = patterns.map_blocks(
        _features_block, drop_axis=[nav_ndim + 1], chunks=patterns.chunks[:nav_ndim] + ((k,),),
        dtype=np.float32, meta=np.empty((0,) * (nav_ndim + 1), np.float32),
        # A delayed key: the background travels to each worker once, not inside every task.
        background=settings, static_bg=dask.delayed(static_bg) if static_bg is not None else None,
        side=side)
    return np.asarray(_compute(features, client, progress), np.float32), settings


def segment_map(map_store_path, *, background: str | dict = "auto", min_region: int = 9,
                core_fraction: float | tuple[float, ...] = (0.75, 0.5),
                static_bg: np.ndarray | None = None, client=None,
                progress: bool | None = None) -> MapSegmentation:
    """The grains of a map store (or a numpy or Dask array of patterns, as ``map_features``):
    connected regions of mutually similar patterns
    (``pure.segment_grains``) and each pixel's distance from their boundaries. Reads the map
    twice (its mean pattern unless ``static_bg`` is given, then the features); holds 1 KB of
    features per pattern here."""
    features, settings = map_features(map_store_path, background=background, static_bg=static_bg,
                                      client=client, progress=progress)
    similarity = relative_similarity(neighbour_similarity(features))
    threshold = adaptive_threshold(similarity)
    labels = segment_grains(similarity, threshold, min_size=min_region, core_fraction=core_fraction)
    labels = labels.reshape(features.shape[:-1]).astype(np.int32)  # a line scan stays (n,)
    return MapSegmentation(labels=labels, interior=interior_distance(labels),
                           similarity=similarity, threshold=float(threshold), background=settings)


def find_pure(map_store_path: str | Path, *, background: str | dict = "auto", min_grains: int = 4,
              n_max: int = 500, per_grain: int = 5, seed: int = 0, min_distance: float = 2.0,
              min_region: int = 9, core_fraction: float | tuple[float, ...] = (0.75, 0.5),
              predicted_minority: np.ndarray | None = None,
              max_minority: float = 0.1, client=None, progress: bool | None = None) -> PureSelection:
    """Find pure patterns in the grain interiors of a map store, without indexing.

    Reads the map twice (its mean pattern, then the features) and chooses up to ``per_grain``
    patterns from each grain, ``n_max`` in all (``pure.choose_pure``).

    - ``background``: ``"auto"`` (the preprocess stage's per-map decision when it is
      available, else ``separate``'s default: static map mean + dynamic) or a dict of
      ``kdeconv.config.separate.BackgroundConfig`` fields (``{"static": "none", "dynamic":
      False}`` for patterns already background-corrected).
    - ``min_distance`` (px): how far the chosen pixels stay from any other grain, boundary
      pixel and the scan edge. Raise it for a beam footprint wider than the scan step.
    - ``min_region`` (px) and ``core_fraction``: ``segment_grains``'s; lower them for grains
      only a few pixels wide.
    - ``predicted_minority`` (nav shape): a base model's minority weight per pixel; candidates
      predicted above ``max_minority`` are dropped (the second vote).
    - ``client``: a ``distributed.Client`` (None: dask's default scheduler).

    The same map and ``seed`` give the same patterns whatever the chunking or the worker
    count. Raises ``InputError`` when fewer than ``min_grains`` grains hold pure candidates.
    """
    start = time.perf_counter()
    seg = segment_map(map_store_path, background=background, min_region=min_region,
                      core_fraction=core_fraction, client=client, progress=progress)
    labels, interior, similarity, threshold = seg.labels, seg.interior, seg.similarity, seg.threshold
    nav_shape, settings = labels.shape, seg.background
    minority = None
    if predicted_minority is not None:
        minority = np.asarray(predicted_minority, np.float64)
        if minority.shape != nav_shape:
            raise InputError(f"predicted minority weights {minority.shape} do not match the map "
                             f"{nav_shape}")
    candidates = pure_candidates(labels, interior, similarity, threshold, min_distance=min_distance,
                                 predicted_minority=minority, max_minority=max_minority)
    indices = choose_pure(labels, interior, similarity, n_max, per_grain, seed, threshold=threshold,
                          min_distance=min_distance, predicted_minority=minority,
                          max_minority=max_minority)
    flat_labels = labels.reshape(-1)
    n_grains = int(len(np.unique(flat_labels[candidates.reshape(-1)])))
    n_regions = int(flat_labels.max(initial=-1) + 1)
    if n_grains < min_grains:
        raise InputError(
            f"found pure patterns in {n_grains} grain(s) of {map_store_path} ({n_regions} grains "
            f"in all), fewer than the {min_grains} needed; give the pure patterns yourself with "
            "--pure FILE or --references DIR_OR_STORE")
    return PureSelection(indices=indices, grains=flat_labels[indices].astype(np.int32),
                         labels=labels.reshape(nav_shape).astype(np.int32), nav_shape=tuple(nav_shape),
                         n_grains=n_grains, n_regions=n_regions, n_candidates=int(candidates.sum()),
                         threshold=float(threshold), background=settings,
                         seconds=time.perf_counter() - start)


def one_crystal_segments(map_store_path: str | Path, labels: np.ndarray, segments: np.ndarray, *,
                         background: dict[str, Any], static_bg: np.ndarray | None = None
                         ) -> tuple[np.ndarray, dict[str, Any]]:
    """One id per crystal for ``segments`` (grain labels of ``labels``), and a record.

    A bent grain is cut into segments where its lattice turns faster than the segmentation
    allows; mixed as two grains, its parts would teach that one crystal is a mixture. Two segments
    that meet are one crystal when the neighbour fit would call them so where they meet: their
    means there (each one's pixels nearest the meeting point on bent maps) correlate as one
    grain's, or as one crystal's once the map's shared direction is taken out
    (``separate.neighbour_fit.one_crystal``; Σ3 twins and distinct grains stay apart). Reads the
    map's centre window and the patterns at the meeting points (a few per pair of segments)."""
    import zarr

    from kdeconv.adapt.pure import crystal_groups, segment_contacts
    from kdeconv.generate.driver import rows_at
    from kdeconv.separate.chunk import blank_frames
    from kdeconv.separate.neighbour_fit import (
        DEFAULT_SETTINGS,
        fit_shape_for,
        mean_reliability,
        one_crystal,
        preprocessed,
    )
    from kdeconv.separate.neighbours import map_reading

    segments = np.asarray(segments, np.int64)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        return segments.copy(), {"skipped": "needs a 2-D map"}
    settings = DEFAULT_SETTINGS
    patterns = zarr.open_group(str(map_store_path), mode="r")["patterns"]
    reading = map_reading(patterns, None, labels, interior_distance(labels), background, static_bg, settings)
    contacts = segment_contacts(labels, np.unique(segments), settings.radius, reading.nearest)
    joined: list[tuple[int, int]] = []
    if contacts:
        flat = np.unique(np.concatenate([np.concatenate(c[2:]) for c in contacts]))
        raw = rows_at(patterns, flat)[:, None]  # the fit's (hy, hx, sy, sx) layout, one column
        pre, vectors = preprocessed(raw, blank_frames(raw), background, static_bg, window=reading.window)
        shape, vectors = fit_shape_for(pre.shape[-2:]), vectors[:, 0]
        for i, j, at_i, at_j in contacts:
            parts = [vectors[np.searchsorted(flat, at)] for at in (at_i, at_j)]
            parts = [v[np.any(v, axis=1)] for v in parts]
            if not all(len(v) for v in parts):
                continue
            means = np.stack([v.mean(axis=0) for v in parts])
            means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
            reliability = mean_reliability([len(v) for v in parts], reading.signal)
            if one_crystal(means, reliability, reading.shared, settings, shape, reading.window)[0, 1]:
                joined.append((int(i), int(j)))
    crystals = crystal_groups(segments, joined)
    return crystals, {"contacts": len(contacts), "joined": [list(p) for p in joined],
                      "crystals": int(len(np.unique(crystals))),
                      "segments": int(len(np.unique(segments))),
                      "coherence": round(reading.coherence, 4), "nearest": reading.nearest}


# --------------------------------------------------------------------------- user-given pure patterns

_TEXT = (".txt", ".csv", ".tsv", ".dat", ".lst", "")
_IMAGES = (".png", ".tif", ".tiff", ".bmp")


def read_pure_file(path: str | Path, nav_shape: tuple[int, ...]) -> np.ndarray:
    """Pure patterns the user names: sorted unique flat (row-major) indices, int64.

    Accepted files:

    - text (``.txt``, ``.csv``, ``.tsv``, ...): one flat index per line, or ``row, col`` pairs
      (comma, semicolon, tab or space separated; ``#`` comments and one header line allowed);
    - ``.npy``: integer flat indices (k,) or (row, col) pairs (k, 2), or a boolean (dtype bool)
      mask of the map's navigation shape;
    - an image (``.png``, ``.tif``, ``.tiff``, ``.bmp``) of the map's navigation shape: the
      non-zero pixels are the pure patterns.

    Anything else, an index outside the map or an empty selection raises ``InputError`` naming
    the file.
    """
    path = Path(path)
    nav_shape = tuple(int(n) for n in nav_shape)
    if not path.is_file():
        raise InputError(f"pure-pattern file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif suffix in _IMAGES:
            data = _read_mask_image(path)
        elif suffix in _TEXT:
            data = _read_index_text(path)
        else:
            raise InputError(f"{path}: unknown pure-pattern file type {suffix!r} (use a text/CSV "
                             "list of indices or (row, col) pairs, a .npy array, or a PNG/TIFF mask)")
    except InputError:
        raise
    except Exception as err:  # numpy, tifffile and imageio raise many types for a bad file
        raise InputError(f"cannot read pure-pattern file {path}: {type(err).__name__}: {err}") from None
    return _to_indices(np.asarray(data), nav_shape, path)


def _read_mask_image(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        image = tifffile.imread(str(path))
    else:
        import imageio.v3 as iio

        image = iio.imread(str(path))
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]  # drop alpha
    if image.ndim == 3 and image.shape[-1] in (1, 3):
        image = image.max(axis=-1)
    return image != 0


def _read_index_text(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    text = path.read_text(encoding="utf-8", errors="strict")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in line.replace(",", " ").replace(";", " ").replace("\t", " ").split() if f]
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            if not rows and all(not _is_number(f) for f in fields):
                continue  # a header line such as "row,col"
            raise InputError(f"{path} line {number}: not a number in {line!r}") from None
    if not rows:
        raise InputError(f"{path} lists no pure patterns")
    widths = {len(r) for r in rows}
    if len(widths) != 1 or widths.pop() not in (1, 2):
        raise InputError(f"{path}: every line must hold one flat index or a (row, col) pair")
    values = np.asarray(rows, np.float64)
    if not np.array_equal(values, np.round(values)):
        raise InputError(f"{path}: indices must be whole numbers")
    values = values.astype(np.int64)
    return values[:, 0] if values.shape[1] == 1 else values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_indices(data: np.ndarray, nav_shape: tuple[int, ...], path: Path) -> np.ndarray:
    total = int(np.prod(nav_shape))
    line = len(nav_shape) == 1
    if data.dtype == bool:  # a mask (images are read as masks)
        fits = data.shape == nav_shape or (line and data.shape in ((1, total), (total, 1)))
        if not fits:
            raise InputError(f"{path}: mask shape {data.shape} does not match the map's "
                             f"navigation shape {nav_shape}")
        indices = np.flatnonzero(data.reshape(-1))
    elif data.dtype.kind in "iu" and data.ndim == 1:
        indices = data.astype(np.int64)
        bad = indices[(indices < 0) | (indices >= total)]
        if bad.size:
            raise InputError(f"{path}: index {int(bad[0])} is outside the map of {total} patterns")
    elif data.dtype.kind in "iu" and data.ndim == 2 and data.shape[1] == 2:
        if line:
            raise InputError(f"{path}: (row, col) pairs given for a line scan of {total} patterns; "
                             "give flat indices")
        rows, cols = data[:, 0].astype(np.int64), data[:, 1].astype(np.int64)
        outside = (rows < 0) | (rows >= nav_shape[0]) | (cols < 0) | (cols >= nav_shape[1])
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise InputError(f"{path}: pixel ({rows[i]}, {cols[i]}) is outside the map "
                             f"{nav_shape[0]}x{nav_shape[1]}")
        indices = np.ravel_multi_index((rows, cols), nav_shape).astype(np.int64)
    else:
        raise InputError(f"{path}: expected flat indices (k,), (row, col) pairs (k, 2) or a "
                         f"boolean mask {nav_shape}, got a {data.dtype} array of shape {data.shape}")
    indices = np.unique(indices)
    if indices.size == 0:
        raise InputError(f"{path} selects no pure patterns")
    return indices
