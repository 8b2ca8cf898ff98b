"""Recognise an input and describe it: format, shape, dtype, metadata and a picklable layout.

kikuchipy is used only for what it is good at: picking the format, parsing headers and metadata
(scan step, detector). The pattern bytes are read later by ``kdeconv.io.layouts`` inside each task
(kikuchipy's own lazy readers put the whole file, or an unpicklable h5py object, in the graph).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.detector import DetectorSpec
from kdeconv.errors import InputError

__all__ = ["Source", "open_source", "image_dtype", "check_2d", "file_size_check"]

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
    if not path.is_dir() and not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")
    from kdeconv.io.formats import reader_for

    spec, plugin = reader_for(path)
    if spec.read is not None:
        source = spec.read(path, allow_size_mismatch)
    else:
        source = _vendor_file(path, plugin, spec.read_header, allow_size_mismatch)
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


# ----------------------------------------------------------------------------- shared by formats


def image_dtype(dtype: np.dtype, what: str) -> np.dtype:
    if dtype.newbyteorder("=") not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise InputError(f"{what} has dtype {dtype}; only 8- or 16-bit grayscale patterns are supported")
    return dtype


def check_2d(shape: tuple[int, ...], what: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise InputError(f"{what} has shape {tuple(shape)}; patterns must be 2D grayscale images")
    return int(shape[0]), int(shape[1])


def file_size_check(path: Path, needed: int, what: str) -> None:
    size = path.stat().st_size
    if size < needed:
        raise InputError(f"{path.name} is truncated: {what} needs {needed} bytes but the file has {size}")


def _vendor_file(path: Path, name: str, read_header, allow_size_mismatch: bool = False) -> Source:
    """A vendor file through its format's ``read_header``: the layout of its patterns and the
    scan and detector metadata kikuchipy parses."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. hexagonal grid, missing NORDIF background
            layout, scan = read_header(path, name, allow_size_mismatch, notes)
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
