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

__all__ = ["References", "read_references"]


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
                         f"{pattern_shape[0]}x{pattern_shape[1]}: they must come from the same detector setting")
    label_names = sorted(set(names), key=names.index)
    labels = np.array([label_names.index(name) for name in names], np.int64)
    stack = np.stack(patterns)
    root = zarr.open_group(str(store), mode="w")
    root.attrs.update(store_attrs("map", source={**origin, "labels": names}))
    root.create_array("patterns", data=stack, chunks=(min(len(stack), 256),) + tuple(shape))
    return References(Path(store), np.arange(len(stack), dtype=np.int64), labels, label_names)
