"""``kdeconv export``: one store array -> kikuchipy h5ebsd, EDAX UP1/UP2 or multi-page TIFF.

All three are lossless and stream chunk by chunk. The output is written to ``OUT.partial`` and
renamed at the end, so a failed export never leaves a file that looks complete: on any error,
a full disk included, the partial file is removed. The files are uncompressed, so an export that
cannot fit is refused before it starts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from kdeconv.config.cluster import ClusterConfig
from kdeconv.config.export import ExportConfig
from kdeconv.errors import InputError, environment_fault
from kdeconv.io.edax import write_up1, write_up2
from kdeconv.io.store import (check_free_space, discard_output, finalize_output, open_store,
                              prepare_output)

__all__ = ["export", "EXPORT_SUFFIXES", "write_h5ebsd", "write_tiff", "iter_patterns"]

EXPORT_SUFFIXES = (".h5", ".up2", ".up1", ".tif", ".tiff")


def export(config: ExportConfig, cluster: ClusterConfig | None = None, *,
           echo: Callable[[str], None] = print) -> Path:
    import zarr  # noqa: F401  (open_store needs it; fail early if missing)

    from kdeconv.cluster import Timer, open_client, summary_line

    output = Path(config.output)
    suffix = output.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise InputError(f"unsupported output extension '{output.suffix}': use .h5, .up2, .up1 or .tif")
    group = open_store(config.store, arrays=(config.array,))  # also: every chunk is there
    array = group[config.array]
    if array.ndim not in (3, 4):
        raise InputError(f"array '{config.array}' has shape {array.shape}; export needs patterns "
                         "(n, sy, sx) or (ny, nx, sy, sx)")
    if min(array.shape[-2:]) < 4:
        raise InputError(f"array '{config.array}' has shape {array.shape}: its last two axes are not "
                         "a pattern (export patterns, A or B)")
    dtype = np.dtype(array.dtype)
    if suffix == ".up1" and dtype != np.uint8:
        raise InputError(f"cannot export {dtype} patterns to UP1 (8-bit) without losing data: "
                         "use .up2, .h5 or .tif")
    if suffix == ".up2" and dtype not in (np.uint8, np.uint16):
        raise InputError(f"cannot export {dtype} patterns to UP2 (16-bit): use .h5 or .tif")
    if suffix in (".tif", ".tiff") and dtype.kind not in "uif":
        raise InputError(f"cannot export {dtype} patterns to TIFF")
    source = dict(group.attrs.get("source") or {})
    scan = source.get("scan") or {}
    n = int(np.prod(array.shape[:-2]))
    itemsize = 2 if suffix == ".up2" else dtype.itemsize
    nbytes = n * int(np.prod(array.shape[-2:])) * itemsize + 2**16  # + headers, metadata
    staging = prepare_output(output, config.overwrite, inputs=(config.store,), nbytes=nbytes)
    try:
        check_free_space(output, nbytes)
        with Timer() as timer:
            if suffix in (".up2", ".up1"):
                import dask.array as da

                if suffix == ".up2" and dtype == np.uint8:
                    echo("note: uint8 patterns are written to UP2 as uint16 (values unchanged)")
                writer = write_up2 if suffix == ".up2" else write_up1
                with open_client(cluster, echo=echo) as client:
                    writer(staging, da.from_zarr(array), _step(scan, "x"), _step(scan, "y"), client=client)
            elif suffix == ".h5":
                write_h5ebsd(staging, array, source)
            else:
                write_tiff(staging, array, source)
        finalize_output(staging, output)
    except BaseException as err:
        disk_full = _short_write_on_full_disk(err, output, nbytes)
        discard_output(staging, output)
        if disk_full:
            raise environment_fault(OSError(errno.ENOSPC, "No space left on device"),
                                    output, nbytes) from None
        raise
    echo(summary_line(f"export {config.array} -> {output.name}", n, timer.seconds))
    return output


def _short_write_on_full_disk(err: BaseException, output: Path, nbytes: int) -> bool:
    """numpy's short write ("N requested and 0 written", no errno), as TIFF writing raises it,
    on a file system left with less than the output needs: a full disk."""
    import re
    import shutil

    if not (isinstance(err, OSError) and err.errno is None
            and re.search(r"\d+ requested and \d+ written", str(err))):
        return False
    try:
        return shutil.disk_usage(output.parent).free < nbytes
    except OSError:
        return False


def _step(scan: dict, axis: str) -> float:
    value = scan.get(f"step_{axis}")
    return float(value) if value is not None else 1.0


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


def _detector(source: dict, nav_shape: tuple[int, ...], sig_shape: tuple[int, int]):
    from kikuchipy.detectors import EBSDDetector

    info = source.get("detector") or {}
    kwargs: dict[str, Any] = {"shape": sig_shape}
    if info.get("pc") is not None:
        pc = np.asarray(info["pc"], dtype=float)
        if pc.size > 3:
            pc = pc.reshape(tuple(nav_shape) + (3,)) if pc.size == 3 * int(np.prod(nav_shape)) \
                else pc.reshape(-1, 3).mean(axis=0)
        kwargs["pc"] = pc
    for key in ("tilt", "sample_tilt", "azimuthal", "twist", "binning", "px_size"):
        if info.get(key) is not None:
            kwargs[key] = info[key]
    if list(info.get("shape") or sig_shape) != list(sig_shape):
        kwargs.pop("binning", None)
    return EBSDDetector(**kwargs)


def write_h5ebsd(path, array, source: dict | None = None) -> Path:
    """kikuchipy h5ebsd through kikuchipy's own writer, from a lazy signal over the Zarr array."""
    import dask
    import dask.array as da
    from kikuchipy.io.plugins.kikuchipy_h5ebsd import file_writer
    from kikuchipy.signals import LazyEBSD

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
            file_writer(str(path), signal)
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
