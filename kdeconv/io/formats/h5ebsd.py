"""h5ebsd: kikuchipy's, EDAX's and Bruker's .h5 and Oxford's .h5oina (read); kikuchipy's .h5
(written by ``export`` through kikuchipy's own writer)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.detector import DetectorSpec
from kdeconv.errors import InputError
from kdeconv.io.formats import FormatSpec
from kdeconv.io.layouts import HDF5Layout

__all__ = ["FORMAT", "read_header", "write_h5ebsd"]

PLUGINS = ("kikuchipy_h5ebsd", "edax_h5ebsd", "bruker_h5ebsd", "oxford_h5ebsd")
# kikuchipy.load reads Oxford's processed patterns by default; so do we (the oracle must agree).
READER_OPTIONS = {"oxford_h5ebsd": {"processed": True}}


def read_header(path: Path, plugin: str, allow_size_mismatch: bool = False,
                notes: list[str] | None = None):
    """Layout, scan and detector of an h5ebsd file (kikuchipy, EDAX, Bruker or Oxford .h5oina),
    through the plugin's reader without its lazy pattern array."""
    from kdeconv._kikuchipy import plugin_reader

    reader = plugin_reader(plugin)(str(path), **READER_OPTIONS.get(plugin, {}))
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


def _step(scan: dict, axis: str) -> float:
    value = scan.get(f"step_{axis}")
    return float(value) if value is not None else 1.0


def _detector(source: dict, nav_shape: tuple[int, ...], sig_shape: tuple[int, int]):
    """The store's detector for patterns of ``sig_shape`` (binning dropped when they differ)."""
    info = dict(source.get("detector") or {})
    spec = DetectorSpec.from_attrs({**info, "shape": info.get("shape") or list(sig_shape)},
                                   "the store's detector attrs")
    if tuple(spec.shape) != tuple(sig_shape):
        spec = spec.model_copy(update={"shape": tuple(sig_shape), "binning": 1})
    return spec.to_kikuchipy(nav_shape)


def write_h5ebsd(path, array, source: dict | None = None) -> Path:
    """kikuchipy h5ebsd through kikuchipy's own writer, from a lazy signal over the Zarr array."""
    import dask
    import dask.array as da
    from kikuchipy.signals import LazyEBSD

    from kdeconv._kikuchipy import h5ebsd_writer

    source = source or {}
    scan = source.get("scan") or {}
    data = da.from_zarr(array)
    nav, sig = tuple(array.shape[:-2]), tuple(array.shape[-2:])
    signal = LazyEBSD(data)
    unit = scan.get("unit") or "um"
    nav_axes = signal.axes_manager.navigation_axes  # hyperspy order: x first
    names = ["x", "y"][: len(nav_axes)]
    for axis, name in zip(nav_axes, names):
        axis.name, axis.units, axis.scale = name, unit, _step(scan, name)
    detector = _detector(source, nav, sig)
    for axis in signal.axes_manager.signal_axes:
        axis.scale = float(detector.px_size)
    signal.detector = detector
    # kikuchipy stores a lazy signal with da.store into an h5py dataset: h5py objects cannot
    # travel to distributed workers, so this process writes, one chunk at a time (bounded memory).
    try:
        with dask.config.set(scheduler="synchronous"), _uncached_h5_files():
            h5ebsd_writer()(str(path), signal)
    except BaseException:
        _close_h5(path)
        raise
    return Path(path)


@contextlib.contextmanager
def _uncached_h5_files():
    """h5py files opened meanwhile have no chunk cache: HDF5 then writes each chunk when it is
    stored, so a write error (a full disk) is raised by the store, in this thread, instead of
    in a flush at close, where HDF5 cannot recover from it and crashes the process."""
    import h5py

    original = h5py.File

    class UncachedFile(original):
        def __init__(self, name, *args, **kwargs):
            kwargs.setdefault("rdcc_nbytes", 0)
            super().__init__(name, *args, **kwargs)

    h5py.File = UncachedFile
    try:
        yield
    finally:
        h5py.File = original


def _close_h5(path) -> None:
    """Close what the h5 writer left open on ``path`` (it does not on an error): HDF5 would
    otherwise flush it at exit, fail again on a full disk and crash the process."""
    import h5py

    target = os.path.realpath(path)
    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            if os.path.realpath(fid.name.decode()) == target:
                h5py.File(fid).close()
        except Exception:  # closing flushes: on a full disk that fails, the handle is gone anyway
            pass


def _write(path, array, source: dict, *, suffix: str, client=None, cluster=None, progress=None,
           echo=print) -> Path:
    return write_h5ebsd(path, array, source)


FORMAT = FormatSpec("h5ebsd", "h5ebsd (kikuchipy, EDAX, Bruker) and Oxford .h5oina",
                    ("h5", "hdf5", "h5ebsd", "h5oina"), read_header=read_header, kikuchipy_plugins=PLUGINS,
                    write=_write, write_extensions=("h5",), check_write=lambda dtype, suffix: None,
                    write_itemsize=lambda dtype, suffix: dtype.itemsize)
