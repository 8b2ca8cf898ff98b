"""Multi-page TIFF: read (a page per pattern) and written by ``export`` (dtype kept; the grid,
scan and detector in the description, so that ingest restores them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.errors import InputError
from kdeconv.io.formats import FormatSpec
from kdeconv.io.layouts import RawLayout, TiffPagesLayout
from kdeconv.io.sources import Source, check_2d, image_dtype

__all__ = ["FORMAT", "read", "write_tiff", "iter_patterns"]


def read(path: Path, allow_size_mismatch: bool = False) -> Source:
    """A multi-page TIFF, one pattern per page (its grid, scan and detector when kdeconv wrote it)."""
    import tifffile

    try:
        tif = tifffile.TiffFile(str(path))
    except Exception as err:  # tifffile raises several types for a bad file
        raise InputError(f"cannot read {path} as TIFF: {' '.join(str(err).split())}") from None
    with tif:
        try:
            page = tif.pages.first
            sig = check_2d(page.shape, f"TIFF page 0 of {path.name}")
            dtype = image_dtype(np.dtype(page.dtype).newbyteorder(tif.byteorder), f"TIFF {path.name}")
            if len(tif.series) > 1:  # pages written one by one: each its own series
                return _tiff_page_series(path, tif, sig, dtype)
            series = tif.series[0] if tif.series else None
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"cannot read {path} as TIFF (damaged or truncated?): "
                             f"{type(err).__name__}: {' '.join(str(err).split())[:160]}") from None
        shaped = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
        contiguous = (series is not None and series.dataoffset is not None
                      and tuple(series.shape[-2:]) == sig and series.dtype == page.dtype)
        n = int(np.prod(series.shape[:-2])) if contiguous else len(tif.pages)
        # (len(tif.pages) parses every page: only when the series may not cover them all)
        if contiguous and len(series.shape) > 2 and not tif.is_shaped and n != len(tif.pages):
            contiguous, n = False, len(tif.pages)
        if contiguous:
            layout = RawLayout(str(path), int(series.dataoffset), n, sig, dtype.str)
        else:
            layout = TiffPagesLayout(str(path), n, sig, dtype.str)
    attrs = {"path": str(path), "format": "tiff"}
    shape: tuple[int, ...] = (n,) + sig
    recorded = shaped.get("kdeconv_nav_shape") or (shaped.get("shape", [])[:-2] if shaped else None)
    if recorded and int(np.prod(recorded)) == n and len(recorded) in (1, 2):
        shape = tuple(int(v) for v in recorded) + sig  # written by `kdeconv export`: keep its grid
    for key in ("scan", "detector"):
        if isinstance(shaped.get(f"kdeconv_{key}"), dict):
            attrs[key] = shaped[f"kdeconv_{key}"]
    return Source(layout, shape, dtype.newbyteorder("="), attrs)


def _tiff_page_series(path: Path, tif, sig: tuple[int, int], dtype: np.dtype) -> Source:
    """A TIFF of several series (one per page, as written page by page): every page is a pattern,
    all of one shape and dtype."""
    n = 0
    for index, page in enumerate(tif.pages):
        if tuple(page.shape) != sig or np.dtype(page.dtype) != np.dtype(dtype).newbyteorder("="):
            raise InputError(f"TIFF {path.name}: page {index} is {tuple(page.shape)} {np.dtype(page.dtype)}, "
                             f"page 0 is {sig} {np.dtype(dtype).newbyteorder('=')} (pages must be "
                             "patterns of one shape and dtype)")
        n += 1
    layout = TiffPagesLayout(str(path), n, sig, dtype.str)
    return Source(layout, (n,) + sig, dtype.newbyteorder("="), {"path": str(path), "format": "tiff"})


def iter_patterns(array) -> Iterator[np.ndarray]:
    """Yield 2D patterns in map (row-major) order, reading a chunk-row of the store at a time."""
    step = array.chunks[0]
    for start in range(0, array.shape[0], step):
        block = np.asarray(array[start: start + step])
        yield from block.reshape((-1,) + tuple(array.shape[-2:]))


def write_tiff(path, array, source: dict | None = None) -> Path:
    """Multi-page TIFF, one page per pattern, dtype kept; the grid and scan go in the description."""
    import tifffile

    source = source or {}
    shape = tuple(int(v) for v in array.shape)
    nbytes = int(np.prod(shape)) * np.dtype(array.dtype).itemsize
    metadata: dict[str, Any] = {"kdeconv_nav_shape": list(shape[:-2])}
    for key in ("scan", "detector"):
        if source.get(key):
            metadata[f"kdeconv_{key}"] = json.loads(json.dumps(source[key]))
    tifffile.imwrite(str(path), data=iter_patterns(array), shape=shape, dtype=array.dtype,
                     photometric="minisblack", metadata=metadata,
                     bigtiff=nbytes > 2**32 - 2**25)
    return Path(path)


def _write(path, array, source: dict, *, suffix: str, client=None, cluster=None, progress=None,
           echo=print) -> Path:
    return write_tiff(path, array, source)


def _check_write(dtype: np.dtype, suffix: str) -> str | None:
    return None if dtype.kind in "uif" else f"cannot export {dtype} patterns to TIFF"


FORMAT = FormatSpec("tiff", "multi-page TIFF", ("tif", "tiff"), read=read, write=_write,
                    write_extensions=("tif", "tiff"),
                    check_write=_check_write, write_itemsize=lambda dtype, suffix: dtype.itemsize)
