"""Where the patterns sit inside a file, and per-chunk readers that open the file themselves.

A layout is a small frozen dataclass (path, offsets, shapes): it pickles to a few hundred bytes,
so a Dask graph built from it does not grow with the file. ``read_patterns(layout, start, count)``
returns patterns ``start:start+count`` in map (row-major) order as ``(count, sy, sx)``, reading
only those bytes. These are the per-chunk kernels; ``kdeconv.io.ingest`` is the Dask driver.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdeconv.errors import InputError

__all__ = [
    "RawLayout", "OffsetTableLayout", "HDF5Layout", "ImageFilesLayout", "TiffPagesLayout",
    "read_patterns", "natural_key", "list_image_files", "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass(frozen=True)
class RawLayout:
    """Fixed-size records from ``offset`` on: pattern i at ``offset + i*record_bytes + skip``.

    Covers UP1/UP2 (record = pattern), NORDIF ``Pattern.dat`` and .ebsp files in file order
    (record = header + pattern + footer), and contiguous uncompressed TIFF pages.
    """

    path: str
    offset: int
    n_patterns: int
    sig_shape: tuple[int, int]
    dtype: str  # numpy dtype string with byte order, e.g. "<u2"
    record_bytes: int = 0  # 0: records are bare patterns
    skip: int = 0  # bytes before the pattern inside a record


@dataclass(frozen=True)
class OffsetTableLayout:
    """Oxford .ebsp: an int64 table at ``table_offset`` gives each map position's record start.

    Each task reads its own slice of the table from the file (the table is not put in the graph).
    """

    path: str
    table_offset: int
    n_patterns: int
    sig_shape: tuple[int, int]
    dtype: str
    skip: int  # pattern header bytes before the pattern data


@dataclass(frozen=True)
class HDF5Layout:
    """Patterns in an HDF5 dataset, (n, sy, sx) or (n, sy*sx) or flat.

    ``bruker_group``: map order comes from Bruker's ``EBSD/SEM/IY, IX`` (a region of interest);
    each worker derives the permutation from the file once.
    """

    path: str
    dataset: str
    n_patterns: int
    sig_shape: tuple[int, int]
    dtype: str
    bruker_group: str | None = None


@dataclass(frozen=True)
class ImageFilesLayout:
    """One 2D image per file in a folder, in natural file-name order (re-listed by each task)."""

    path: str
    n_patterns: int
    sig_shape: tuple[int, int]
    dtype: str


@dataclass(frozen=True)
class TiffPagesLayout:
    """A multi-page TIFF whose pages are not contiguous (compressed, strips): read page by page."""

    path: str
    n_patterns: int
    sig_shape: tuple[int, int]
    dtype: str


def natural_key(name: str) -> list:
    """``p2.png`` before ``p10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_image_files(folder: str | Path) -> list[str]:
    """PNG/TIFF file names in ``folder`` in natural order; an unreadable folder or entry (no
    permission, a symlink loop) is an ``InputError`` naming it."""
    names = []
    try:
        entries = list(os.scandir(folder))
    except OSError as err:
        raise InputError(f"cannot read folder {folder}: {err.strerror or type(err).__name__}") from None
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            is_file = entry.is_file()
        except OSError as err:  # ELOOP: a symlink loop; EACCES
            raise InputError(f"cannot read {entry.path}: {err.strerror or type(err).__name__}") from None
        if is_file:
            names.append(entry.name)
        elif entry.is_symlink() and not os.path.exists(entry.path):
            raise InputError(f"cannot read {entry.path}: broken symbolic link")
    return sorted(names, key=natural_key)


@functools.lru_cache(maxsize=4)
def _cached_image_files(folder: str, mtime_ns: int) -> tuple[str, ...]:
    return tuple(list_image_files(folder))


def read_patterns(layout, start: int, count: int) -> np.ndarray:
    """Patterns ``start:start+count`` (map order) as ``(count, sy, sx)`` in the layout's dtype."""
    reader = _READERS[type(layout)]
    out = reader(layout, start, count)
    native = np.dtype(layout.dtype).newbyteorder("=")
    return out if out.dtype == native else out.astype(native)


def _read_raw(layout: RawLayout, start: int, count: int) -> np.ndarray:
    dtype = np.dtype(layout.dtype)
    sy, sx = layout.sig_shape
    pattern_bytes = sy * sx * dtype.itemsize
    record = layout.record_bytes or pattern_bytes
    first = layout.offset + start * record
    if record == pattern_bytes and layout.skip == 0:
        data = np.fromfile(layout.path, dtype=dtype, count=count * sy * sx, offset=first)
        got = data.size // (sy * sx)
    else:
        raw = np.fromfile(layout.path, dtype=np.uint8, count=count * record, offset=first)
        got = raw.size // record
        raw = raw[: got * record].reshape(got, record)[:, layout.skip: layout.skip + pattern_bytes]
        data = np.ascontiguousarray(raw).view(dtype)
    if got < count:
        raise InputError(f"{layout.path} is truncated: pattern {start + got} of {layout.n_patterns} "
                         "is missing")
    return data.reshape(count, sy, sx)


def _read_offset_table(layout: OffsetTableLayout, start: int, count: int) -> np.ndarray:
    dtype = np.dtype(layout.dtype)
    sy, sx = layout.sig_shape
    pattern_bytes = sy * sx * dtype.itemsize
    starts = np.fromfile(layout.path, dtype="<i8", count=count, offset=layout.table_offset + 8 * start)
    size = os.path.getsize(layout.path)
    if starts.size < count or (starts + layout.skip + pattern_bytes > size).any():
        raise InputError(f"{layout.path} is truncated: its offset table points past the end of the file")
    out = np.empty((count, sy, sx), dtype)
    first, end = int(starts.min()) + layout.skip, int(starts.max()) + layout.skip + pattern_bytes
    if end - first <= 2 * count * (pattern_bytes + layout.skip) + 2**20:
        # Patterns of a chunk usually sit close together (order varies within rows): one read.
        span = np.fromfile(layout.path, dtype=np.uint8, count=end - first, offset=first)
        for i, pos in enumerate((starts + layout.skip - first).tolist()):
            out[i] = span[pos: pos + pattern_bytes].view(dtype).reshape(sy, sx)
        return out
    with open(layout.path, "rb") as f:
        for i, pos in enumerate(starts.tolist()):
            f.seek(pos + layout.skip)
            out[i] = np.frombuffer(f.read(pattern_bytes), dtype).reshape(sy, sx)
    return out


@functools.lru_cache(maxsize=4)
def _bruker_order(path: str, group: str, mtime_ns: int) -> np.ndarray:
    """Dataset row of each map position, as kikuchipy's Bruker reader orders them."""
    import h5py

    with h5py.File(path, "r") as f:
        iy = f[f"{group}/EBSD/SEM/IY"][()]
        ix = f[f"{group}/EBSD/SEM/IX"][()]
    ny, nx = int(iy.max() - iy.min() + 1), int(ix.max() - ix.min() + 1)
    return np.ravel_multi_index(np.array([iy - iy.min(), ix - ix.min()]), (ny, nx)).argsort()


def _read_hdf5(layout: HDF5Layout, start: int, count: int) -> np.ndarray:
    import h5py

    sy, sx = layout.sig_shape
    with h5py.File(layout.path, "r") as f:
        dset = f[layout.dataset]
        if layout.bruker_group is not None:
            rows = _bruker_order(layout.path, layout.bruker_group, os.stat(layout.path).st_mtime_ns)
            rows = rows[start: start + count]
            # h5py fancy indexing wants increasing indices: read sorted, then put back in map order.
            order = np.argsort(rows)
            data = np.empty((count,) + dset.shape[1:], dset.dtype)
            data[order] = dset[rows[order]]
        elif dset.ndim == 1:
            n = sy * sx
            data = dset[start * n: (start + count) * n]
        else:
            data = dset[start: start + count]
    if data.size != count * sy * sx:
        raise InputError(f"{layout.path} is truncated: dataset {layout.dataset} holds fewer than "
                         f"{layout.n_patterns} patterns")
    return data.reshape(count, sy, sx)


def _read_image(path: str) -> np.ndarray:
    """One image file as an array; an unreadable, corrupt or truncated file is an ``InputError``
    naming it."""
    try:
        if path.lower().endswith((".tif", ".tiff")):
            import tifffile

            return tifffile.imread(path)
        import imageio.v3 as iio

        return iio.imread(path)
    except MemoryError:
        raise
    except OSError as err:
        if err.errno is not None:  # permission, symlink loop, I/O error: the file, not its content
            raise InputError(f"cannot read {path}: {err.strerror or type(err).__name__}") from None
        reason = _short(err)
    except Exception as err:  # each image library has its own types for a bad file
        reason = _short(err)
    raise InputError(f"{path} is not a readable PNG/TIFF image (corrupt or truncated?): {reason}")


def _short(err: BaseException, limit: int = 120) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _read_image_files(layout: ImageFilesLayout, start: int, count: int) -> np.ndarray:
    names = _cached_image_files(layout.path, os.stat(layout.path).st_mtime_ns)
    if len(names) != layout.n_patterns:
        raise InputError(f"image folder {layout.path} changed during ingest "
                         f"({len(names)} images, expected {layout.n_patterns})")
    out = np.empty((count,) + tuple(layout.sig_shape), layout.dtype)
    for i, name in enumerate(names[start: start + count]):
        image = _read_image(os.path.join(layout.path, name))
        _check_image(image, layout, name)
        out[i] = image
    return out


def _check_image(image: np.ndarray, layout, name: str) -> None:
    if image.shape != tuple(layout.sig_shape):
        raise InputError(f"images of mixed shapes: {name} is {image.shape}, the first is "
                         f"{tuple(layout.sig_shape)} (patterns must be 2D grayscale of one shape)")
    if image.dtype.newbyteorder("=") != np.dtype(layout.dtype).newbyteorder("="):
        raise InputError(f"images of mixed dtypes: {name} is {image.dtype}, the first is "
                         f"{np.dtype(layout.dtype)}")


def _read_tiff_pages(layout: TiffPagesLayout, start: int, count: int) -> np.ndarray:
    import tifffile

    out = np.empty((count,) + tuple(layout.sig_shape), layout.dtype)
    page = start
    try:
        with tifffile.TiffFile(layout.path) as tif:
            for i in range(count):
                page = start + i
                image = tif.pages[page].asarray()
                _check_image(image, layout, f"page {page}")
                out[i] = image
    except (InputError, MemoryError):
        raise
    except Exception as err:
        raise InputError(f"cannot read page {page} of {layout.path} (damaged or truncated?): "
                         f"{_short(err)}") from None
    return out


_READERS = {
    RawLayout: _read_raw,
    OffsetTableLayout: _read_offset_table,
    HDF5Layout: _read_hdf5,
    ImageFilesLayout: _read_image_files,
    TiffPagesLayout: _read_tiff_pages,
}
