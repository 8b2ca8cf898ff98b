"""Recognise an input and describe it: format, shape, dtype, metadata and a picklable layout.

kikuchipy is used only for what it is good at: picking the format, parsing headers and metadata
(scan step, detector). The pattern bytes are read later by ``kdeconv.io.layouts`` inside each task
(kikuchipy's own lazy readers put the whole file, or an unpicklable h5py object, in the graph).
"""

from __future__ import annotations

import importlib
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.detector import DetectorSpec
from kdeconv.errors import InputError
from kdeconv.io.layouts import (
    IMAGE_SUFFIXES, HDF5Layout, ImageFilesLayout, OffsetTableLayout, RawLayout, TiffPagesLayout,
    list_image_files, _read_image,
)

__all__ = ["Source", "open_source"]

_H5EBSD_READERS = {
    "kikuchipy_h5ebsd": ("kikuchipy.io.plugins.kikuchipy_h5ebsd._api", "KikuchipyH5EBSDReader", {}),
    "edax_h5ebsd": ("kikuchipy.io.plugins.edax_h5ebsd._api", "EDAXH5EBSDReader", {}),
    "bruker_h5ebsd": ("kikuchipy.io.plugins.bruker_h5ebsd._api", "BrukerH5EBSDReader", {}),
    # kikuchipy.load reads processed patterns by default; so do we (the oracle must agree).
    "oxford_h5ebsd": ("kikuchipy.io.plugins.oxford_h5ebsd._api", "OxfordH5EBSDReader",
                      {"processed": True}),
}
_SUPPORTED = ("edax_binary", "oxford_binary", "nordif", "emsoft_ebsd", *_H5EBSD_READERS)


@dataclass
class Source:
    """An input ready to be read chunk by chunk: ``layout`` + final ``shape`` (…nav, sy, sx)."""

    layout: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def nav_shape(self) -> tuple[int, ...]:
        return self.shape[:-2]

    @property
    def sig_shape(self) -> tuple[int, int]:
        return self.shape[-2:]

    @property
    def n_patterns(self) -> int:
        return int(np.prod(self.nav_shape))


def open_source(path: str | Path, nav_shape: tuple[int, int] | None = None, *,
                allow_size_mismatch: bool = False) -> Source:
    """Inspect ``path`` (vendor file, image folder or multi-page TIFF) without reading patterns.

    A vendor file whose header and size disagree is refused; with ``allow_size_mismatch`` one
    longer than its header says is read as the header says (``attrs["notes"]`` says so).
    """
    path = Path(path)
    try:
        path.stat()
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise InputError(f"input not found: {path}") from None
        raise InputError(f"cannot read {path}: {err.strerror or type(err).__name__}") from None
    path = path.resolve()
    if path.is_dir():
        source = _image_folder(path)
    elif not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")
    elif path.suffix.lower() in (".tif", ".tiff"):
        source = _multipage_tiff(path)
    elif path.suffix.lower() == ".png":
        source = _single_png(path)
    else:
        source = _vendor_file(path, allow_size_mismatch)
    source.attrs["n_patterns"] = source.n_patterns
    source.attrs["nav_shape_in_file"] = list(source.nav_shape)
    if nav_shape is not None:
        source = _reshape_nav(source, tuple(int(v) for v in nav_shape))
    return source


def _reshape_nav(source: Source, nav_shape: tuple[int, int]) -> Source:
    if len(nav_shape) != 2 or min(nav_shape) < 1:
        raise InputError(f"--nav-shape needs two positive integers NY NX, got {nav_shape}")
    if int(np.prod(nav_shape)) != source.n_patterns:
        raise InputError(f"--nav-shape {nav_shape[0]} {nav_shape[1]} gives {int(np.prod(nav_shape))} "
                         f"patterns but the input holds {source.n_patterns}")
    scan = source.attrs.get("scan")
    if scan and scan.get("step_y") is None:
        scan["step_y"] = scan.get("step_x")  # a line scan reshaped to a grid: assume square steps
    detector = source.attrs.get("detector") or {}
    pc = detector.get("pc")
    if pc is not None and np.asarray(pc).size == 3 * source.n_patterns and source.n_patterns > 1:
        detector["pc"] = np.asarray(pc).reshape(nav_shape + (3,)).tolist()
    source.shape = nav_shape + tuple(source.sig_shape)
    return source


# ----------------------------------------------------------------------------- image inputs


def _image_dtype(dtype: np.dtype, what: str) -> np.dtype:
    if dtype.newbyteorder("=") not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise InputError(f"{what} has dtype {dtype}; only 8- or 16-bit grayscale patterns are supported")
    return dtype


def _check_2d(shape: tuple[int, ...], what: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise InputError(f"{what} has shape {tuple(shape)}; patterns must be 2D grayscale images")
    return int(shape[0]), int(shape[1])


def _image_folder(path: Path) -> Source:
    names = list_image_files(path)  # an unreadable folder or entry is an InputError naming it
    if not names:
        raise InputError(f"no PNG/TIFF images in folder {path}")
    first = _read_image(str(path / names[0]))
    sig = _check_2d(first.shape, f"image {names[0]}")
    dtype = _image_dtype(first.dtype, f"image {names[0]}")
    layout = ImageFilesLayout(str(path), len(names), sig, dtype.str)
    return Source(layout, (len(names),) + sig, dtype.newbyteorder("="),
                  {"path": str(path), "format": "image_folder", "first_file": names[0]})


def _single_png(path: Path) -> Source:
    raise InputError(f"a single PNG is one pattern; put the patterns of a map in a folder: {path}")


def _multipage_tiff(path: Path) -> Source:
    import tifffile

    try:
        tif = tifffile.TiffFile(str(path))
    except Exception as err:  # tifffile raises several types for a bad file
        raise InputError(f"cannot read {path} as TIFF: {' '.join(str(err).split())}") from None
    with tif:
        try:
            page = tif.pages.first
            sig = _check_2d(page.shape, f"TIFF page 0 of {path.name}")
            dtype = _image_dtype(np.dtype(page.dtype).newbyteorder(tif.byteorder), f"TIFF {path.name}")
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


# ----------------------------------------------------------------------------- vendor files


def _plugin_for(path: Path) -> dict:
    import h5py
    from kikuchipy.io._io import PLUGINS, _plugin_from_footprints

    ext = path.suffix[1:].lower()
    candidates = [p for p in PLUGINS if ext in p["file_extensions"]]
    plugin = None
    if len(candidates) == 1:
        plugin = candidates[0]
    elif len(candidates) > 1:
        if not h5py.is_hdf5(str(path)):
            raise InputError(f"{path} is not an HDF5 file")
        try:
            plugin = _plugin_from_footprints(str(path), plugins=candidates)
        except Exception as err:
            raise InputError(f"cannot identify {path}: {type(err).__name__}: {err}") from None
    if plugin is None or plugin["name"] not in _SUPPORTED:
        what = plugin["name"] if plugin else f"'.{ext}' files"
        raise InputError(f"unsupported input {path.name}: {what} is not an EBSD pattern format "
                         "(UP1/UP2, .ebsp, NORDIF .dat, h5ebsd, .h5oina, EMsoft EBSD .h5, "
                         "TIFF or an image folder)")
    return plugin


def _vendor_file(path: Path, allow_size_mismatch: bool = False) -> Source:
    plugin = _plugin_for(path)
    name = plugin["name"]
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. hexagonal grid, missing NORDIF background
            if name == "edax_binary":
                layout, scan = _edax_binary(path, allow_size_mismatch, notes)
            elif name == "oxford_binary":
                layout, scan = _oxford_binary(path)
            elif name == "nordif":
                layout, scan = _nordif(path)
            elif name == "emsoft_ebsd":
                layout, scan = _emsoft(path)
            else:
                layout, scan = _h5ebsd(path, name)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, NotImplementedError) as err:
        raise InputError(f"cannot read {path.name} as {name}: {' '.join(str(err).split())}") from None
    sig = tuple(layout.sig_shape)
    nav = _kikuchipy_nav_shape(scan["data_shape"][:-2], layout.n_patterns)
    attrs = {"path": str(path), "format": name, **_scan_attrs(scan.get("axes", []))}
    if notes:
        attrs["notes"] = notes
    if scan.get("detector") is not None:
        attrs["detector"] = DetectorSpec.from_kikuchipy(scan["detector"]).to_attrs()
    dtype = np.dtype(layout.dtype)
    return Source(layout, nav + sig, dtype.newbyteorder("="), attrs)


def _kikuchipy_nav_shape(nav: tuple[int, ...], n: int) -> tuple[int, ...]:
    # As kikuchipy.load (not lazy) gives it: navigation axes of length 1 are squeezed away.
    nav = tuple(int(v) for v in nav if int(v) != 1)
    return nav or (n,)


def _file_size_check(path: Path, needed: int, what: str) -> None:
    size = path.stat().st_size
    if size < needed:
        raise InputError(f"{path.name} is truncated: {what} needs {needed} bytes but the file has {size}")


def _edax_binary(path: Path, allow_size_mismatch: bool = False, notes: list[str] | None = None):
    from kikuchipy.io.plugins.edax_binary._api import EDAXBinaryFileReader

    with open(path, "rb") as f:
        size = path.stat().st_size
        if size < 16:
            raise InputError(f"{path.name} is truncated: no complete EDAX header")
        reader = EDAXBinaryFileReader(f)
        header = reader.read_header()
        dtype = np.dtype(reader.dtype).newbyteorder("<")
        n, sy, sx = int(header["n_patterns"]), int(header["sy"]), int(header["sx"])
        offset = int(header["pattern_offset"])
        if sy < 1 or sx < 1 or offset < 16 or offset > size:
            raise InputError(f"{path.name} is damaged: its header gives patterns of {sy}x{sx} pixels "
                             f"from byte {offset} of {size}")
        pattern_bytes = sy * sx * dtype.itemsize
        held, extra = divmod(size - offset, pattern_bytes)
        what = f"{sy}x{sx} {'UP1' if dtype.itemsize == 1 else 'UP2'} patterns"
        counted = reader.version >= 3 and not header["is_hex"]  # else the count comes from the size
        if not counted and extra:
            raise InputError(f"{path.name} is truncated or damaged: it holds {held} {what} and "
                             f"{extra} bytes more (not a whole number of patterns)")
        if counted and (held, extra) != (n, 0):
            holds = f"{held} {what}" + (f" and {extra} bytes" if extra else "")
            grid = f"{header['ny']}x{header['nx']}"
            if held < n:
                raise InputError(f"{path.name} is truncated: its header says {n} patterns ({grid}), "
                                 f"the file holds {holds}")
            if not allow_size_mismatch:
                raise InputError(f"{path.name}: its header says {n} patterns ({grid}) but the file "
                                 f"holds {holds}; --allow-size-mismatch reads the {n} the header says")
            if notes is not None:
                notes.append(f"{path.name}: its header says {n} patterns ({grid}) but the file "
                             f"holds {holds}; reading the first {n}")
        if n < 1:
            raise InputError(f"{path.name} holds no pattern")
        scan = reader.read_scan(None, lazy=False)  # a np.memmap: nothing is read here
    layout = RawLayout(str(path), int(header["pattern_offset"]), n, (sy, sx), dtype.str)
    return layout, {"data_shape": scan["data"].shape, "axes": scan["axes"]}


def _oxford_binary(path: Path):
    from kikuchipy.io.plugins.oxford_binary._api import OxfordBinaryFileReader

    with open(path, "rb") as f:
        try:
            reader = OxfordBinaryFileReader(f)  # reads the header and offset table, maps the file
        except (ValueError, IndexError, OSError, struct.error) as err:
            raise InputError(f"{path.name} is truncated or damaged: no complete pattern table "
                             f"({type(err).__name__})") from None
        dtype = np.dtype(reader.dtype).newbyteorder("<")
        # Axes as reader.get_scan makes them, without its reads of every pattern footer.
        axes = [{"name": name, "scale": float(step), "units": reader.scan_unit}
                for name, step in zip(reader.axes_names, reader.step_sizes)]
        data_shape = tuple(int(v) for v in reader.data_shape)
        n = reader.n_patterns_present
        record = reader.pattern_header_size + int(reader.n_bytes) + reader.pattern_footer_size
        ordered = not reader.all_patterns_present or np.allclose(np.diff(reader.pattern_order), 1)
        if ordered:
            layout = RawLayout(str(path), int(reader.first_pattern_position), n,
                               tuple(map(int, reader.signal_shape)), dtype.str,
                               record_bytes=record, skip=reader.pattern_header_size)
            _file_size_check(path, reader.first_pattern_position + n * record, f"{n} patterns")
        else:
            layout = OffsetTableLayout(str(path), int(reader.pattern_starts_byte_position), n,
                                       tuple(map(int, reader.signal_shape)), dtype.str,
                                       skip=reader.pattern_header_size)
            starts = reader.get_pattern_starts()
            _file_size_check(path, int(starts.max()) + record if starts.size else 0, f"{n} patterns")
        del reader
    return layout, {"data_shape": data_shape, "axes": axes}


def _nordif(path: Path):
    from kikuchipy.io.plugins.nordif._api import file_reader

    scan = file_reader(str(path), lazy=True)[0]
    ny, nx, sy, sx = scan["data"].shape
    n = ny * nx
    _file_size_check(path, n * sy * sx, f"Setting.txt ({ny}x{nx} patterns of {sy}x{sx})")
    layout = RawLayout(str(path), 0, n, (sy, sx), "|u1")
    return layout, {"data_shape": scan["data"].shape, "axes": scan["axes"],
                    "detector": scan.get("detector")}


def _emsoft(path: Path):
    import h5py
    from kikuchipy.io.plugins.emsoft_ebsd._api import file_reader

    dataset = "EMData/EBSD/EBSDPatterns"
    scan = file_reader(str(path), lazy=True)[0]
    shape = tuple(scan["data"].shape)
    del scan["data"]  # drops kikuchipy's handle on the open file
    with h5py.File(path, "r") as f:
        dset = f[dataset]
        dtype = dset.dtype
    sy, sx = shape[-2:]
    n = int(np.prod(shape[:-2]))
    layout = HDF5Layout(str(path), dataset, n, (int(sy), int(sx)), np.dtype(dtype).str)
    return layout, {"data_shape": shape, "axes": scan["axes"], "detector": scan.get("detector")}


def _h5ebsd(path: Path, name: str):
    import h5py

    module, cls, kwargs = _H5EBSD_READERS[name]
    reader = getattr(importlib.import_module(module), cls)(str(path), **kwargs)
    captured: dict[str, Any] = {}

    def capture(group, data_shape, lazy=False, indices=None):
        # Instead of kikuchipy's da.from_array(h5py dataset): remember where the patterns are.
        captured.update(group=group.name, data_shape=tuple(int(v) for v in data_shape), indices=indices)
        return None

    try:
        reader.get_data = capture
        group = reader.get_desired_scan_groups(None)[0]
        scan = reader.scan2dict(group, lazy=True)
        dataset = f"{group.name}/EBSD/Data/{reader.patterns_name}"
        if dataset not in reader.file:
            raise InputError(f"{path.name} has no pattern dataset {dataset}")
        dset = reader.file[dataset]
        ny, nx, sy, sx = captured["data_shape"]
        n = ny * nx
        if dset.size < n * sy * sx:
            raise InputError(f"{path.name} is truncated: {dataset} holds {dset.size} values, "
                             f"the header promises {n} patterns of {sy}x{sx}")
        dtype = np.dtype(dset.dtype)
    finally:
        reader.file.close()
    indices = captured["indices"]
    permuted = indices is not None and not np.array_equal(indices, np.arange(len(indices)))
    layout = HDF5Layout(str(path), dataset, n, (sy, sx), dtype.str,
                        bruker_group=captured["group"] if permuted else None)
    data_shape = tuple(v for v in (ny, nx) if v != 1) + (sy, sx)
    return layout, {"data_shape": data_shape, "axes": scan["axes"], "detector": scan.get("detector")}


# ----------------------------------------------------------------------------- metadata


def _scan_attrs(axes: list[dict]) -> dict:
    nav = {a["name"]: a for a in axes if a.get("name") in ("x", "y")}
    if not nav:
        return {}
    unit = next(iter(nav.values())).get("units") or "um"
    step = {f"step_{k}": float(nav[k]["scale"]) if k in nav else None for k in ("y", "x")}
    if step["step_y"] is None:
        step["step_y"] = step["step_x"]
    return {"scan": {**step, "unit": str(unit)}}
