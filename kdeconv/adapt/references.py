"""Pure reference patterns the user gives ``kdeconv adapt --references``.

A folder of PNG/TIFF images (each a pure pattern; sub-folders name labels such as the phase:
``refs/bcc/*.png``, ``refs/fcc/*.png``), or another map store (all its patterns; labels from a
text file, one per pattern). They are gathered into a small map store inside the adapt run folder,
so that ``generate``'s map source mixes them like any map's patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdeconv.errors import InputError

__all__ = ["References", "read_references", "group_references", "check_reference_level",
           "reference_look_warning", "SAME_GRAIN_NCC", "LEVEL_RATIO_MAX"]

# Two references are one grain when the NCC of their features is at least this and within
# SAME_GRAIN_SLACK of each one's best match (measured on kikuchipy's real Ni patterns: same grain
# 0.96-0.98, the other grain 0.78-0.87, the detector's fixed pattern making them all alike).
SAME_GRAIN_NCC = 0.9
SAME_GRAIN_SLACK = 0.03


# The map's static background is subtracted from the references as from the map, so they must be
# recorded at the map's level: an 8-bit export of a 16-bit map reads 1/256 of it, another exposure
# its ratio. Within one map, pattern means vary by well under this factor.
LEVEL_RATIO_MAX = 1.5


def check_reference_level(references: np.ndarray, static_background: np.ndarray, dtype) -> None:
    """Refuse references whose mean level is not the map's (the mean of its static background):
    subtracting that background would leave its shape, not their bands."""
    mask = static_background != 0  # a masked map's corners hold no level
    level = float(np.mean(static_background[mask])) if mask.any() else float(np.mean(static_background))
    refs = np.asarray(references, np.float64).reshape(len(references), -1)
    theirs = float(np.median(refs[:, mask.reshape(-1)].mean(axis=1) if mask.any() else refs.mean(axis=1)))
    if level <= 0 or theirs <= 0:
        return
    ratio = theirs / level
    if not 1 / LEVEL_RATIO_MAX <= ratio <= LEVEL_RATIO_MAX:
        raise InputError(
            f"the reference patterns ({np.asarray(references).dtype}, mean level {theirs:.4g}) are "
            f"{ratio:.3g}x the map's ({np.dtype(dtype)}, {level:.4g}): the map's static background is "
            "removed from them, so give them as the map records them (same bit depth, exposure and "
            "export; where both are background-corrected already, --background processed)")


def reference_look_warning(references: np.ndarray, background: dict, decided: str) -> str | None:
    """A ``Warning:`` line when the references, judged alone, read otherwise (raw or background-
    corrected) than the map was decided (``decided``): both get the map's treatment, which is
    wrong for one of them if they were exported differently. None when they agree."""
    from kdeconv.preprocess.background import decide_background
    from kdeconv.preprocess.mask import window_patterns

    theirs, evidence = decide_background(window_patterns(np.asarray(references), background))
    if theirs == decided:
        return None
    look = {"raw": "raw (detector background present)", "processed": "background-corrected"}
    return (f"Warning: the reference patterns read {look[theirs]} (low-frequency share "
            f"{evidence['lowfreq_share']:.3f}, rim/centre {evidence['falloff']:.2f}) but the map "
            f"{look[decided]}; both are treated as the map. If they were exported differently, give "
            "them as the map records them; --background raw|processed decides for both")


def group_references(features: np.ndarray) -> np.ndarray:
    """Grain id (n,) of references from their unit-norm features (``adapt.pure.pattern_features``):
    near-duplicates (several references of one grain) share an id, so that no training pair
    mixes a grain with itself."""
    f = np.asarray(features, np.float64)
    n = len(f)
    ncc = f @ f.T
    np.fill_diagonal(ncc, -np.inf)
    best = ncc.max(axis=1) if n > 1 else np.zeros(n)
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if ncc[i, j] >= SAME_GRAIN_NCC and ncc[i, j] >= min(best[i], best[j]) - SAME_GRAIN_SLACK:
                parent[root(i)] = root(j)
    roots = np.array([root(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)


@dataclass
class References:
    store: Path                 # map store (n, sy, sx) of the references
    indices: np.ndarray         # int64 (n,): 0..n-1
    labels: np.ndarray          # int64 (n,): label id per reference
    label_names: list[str]

    def describe(self) -> list[str]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return [f"{count} {name}" for name, count in zip(self.label_names, counts)]


def _images(folder: Path) -> list[Path]:
    from kdeconv.io.layouts import list_image_files

    return [folder / name for name in list_image_files(folder)]


def _read_folder(folder: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(patterns, label per pattern, file per pattern): sub-folders are labels."""
    from kdeconv.io.layouts import _read_image

    groups = [(folder.name, _images(folder))] if _images(folder) else []
    groups += [(sub.name, _images(sub)) for sub in sorted(p for p in folder.iterdir() if p.is_dir())]
    groups = [(name, files) for name, files in groups if files]
    if not groups:
        raise InputError(f"no PNG/TIFF reference patterns in {folder} or its sub-folders")
    patterns, labels, files = [], [], []
    for name, paths in groups:
        for path in paths:
            try:
                image = _read_image(str(path))
            except Exception as err:  # imageio/tifffile raise many types for a damaged file
                raise InputError(f"cannot read reference pattern {path}: {type(err).__name__}") from None
            patterns.append(np.asarray(image))
            labels.append(name)
            files.append(str(path))
    return patterns, labels, files


def _read_label_file(path: Path, n: int) -> list[str]:
    if not path.is_file():
        raise InputError(f"reference labels file not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != n:
        raise InputError(f"{path} gives {len(names)} labels for {n} reference patterns")
    return names


def read_references(source: str | Path, store: Path, pattern_shape: tuple[int, int],
                    labels_file: str | Path | None = None) -> References:
    """Gather the references at ``source`` into the map store ``store`` (overwritten)."""
    import zarr

    from kdeconv.io.store import open_store, store_attrs

    source = Path(source)
    if not source.exists():
        raise InputError(f"references not found: {source}")
    if source.is_dir() and not (source / "zarr.json").exists():
        patterns, names, files = _read_folder(source)
        origin = {"path": str(source.resolve()), "format": "reference images", "files": files}
    else:
        group = open_store(source, "map", arrays=("patterns",))
        data = np.asarray(group["patterns"][...])
        patterns = list(data.reshape((-1,) + data.shape[-2:]))
        names = ["references"] * len(patterns)
        origin = {"path": str(source.resolve()), "format": "map store"}
    if labels_file is not None:
        names = _read_label_file(Path(labels_file), len(patterns))
    shapes = {p.shape for p in patterns}
    dtypes = {p.dtype for p in patterns}
    if len(shapes) != 1 or len(dtypes) != 1:
        raise InputError(f"reference patterns of mixed shapes or dtypes in {source}: "
                         f"{sorted(map(str, shapes))}, {sorted(map(str, dtypes))}")
    shape = shapes.pop()
    if tuple(shape) != tuple(pattern_shape):
        raise InputError(f"reference patterns are {shape[0]}x{shape[1]} but the map's are "
                         f"{pattern_shape[0]}x{pattern_shape[1]}: they must come from the same detector "
                         "setting")
    label_names = sorted(set(names), key=names.index)
    labels = np.array([label_names.index(name) for name in names], np.int64)
    stack = np.stack(patterns)
    root = zarr.open_group(str(store), mode="w")
    root.attrs.update(store_attrs("map", source={**origin, "labels": names}))
    root.create_array("patterns", data=stack, chunks=(min(len(stack), 256),) + tuple(shape))
    return References(Path(store), np.arange(len(stack), dtype=np.int64), labels, label_names)
