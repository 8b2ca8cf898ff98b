"""EDAX binary UP1/UP2: read through kikuchipy's header reader; written (version 3) as kikuchipy's
reader parses it (little-endian).

Header (42 bytes): uint32 version=3, uint32 sx, uint32 sy, uint32 pattern offset=42, 1 byte,
uint32 nx, uint32 ny, uint8 hex flag=0, float64 dx, float64 dy; then the patterns row-major,
uint16 (UP2) or uint8 (UP1). The body is filled chunk by chunk with positional writes (whole
patterns; ``np.memmap`` for any other region), so a Dask array is written with bounded memory, in
parallel on workers that share the file system.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdeconv.errors import InputError
from kdeconv.io.formats import FormatSpec
from kdeconv.io.layouts import RawLayout

__all__ = ["FORMAT", "read_header", "write_up2", "write_up1", "edax_header", "HEADER_BYTES"]

HEADER_BYTES = 42


def edax_header(sy: int, sx: int, ny: int, nx: int, step_x: float, step_y: float) -> bytes:
    header = struct.pack("<IIII", 3, sx, sy, HEADER_BYTES) + b"\x00" \
        + struct.pack("<II", nx, ny) + b"\x00" + struct.pack("<dd", step_x, step_y)
    assert len(header) == HEADER_BYTES
    return header


@dataclass(frozen=True)
class _BodyTarget:
    """``da.store`` target: writes each region into the file body (picklable). Whole patterns go
    in with ``os.pwrite`` (page cache, as ``ndarray.tofile``): a memmap flushed per chunk waited
    for the disk."""

    path: str
    shape: tuple[int, ...]
    dtype: str

    def __setitem__(self, key, value) -> None:
        runs = self._runs(key)
        if runs is None:  # a region cut across patterns: through a memmap
            body = np.memmap(self.path, dtype=self.dtype, mode="r+", offset=HEADER_BYTES, shape=self.shape)
            body[key] = value
            body.flush()
            del body
            return
        data = np.ascontiguousarray(value, dtype=self.dtype)
        flat = data.reshape(-1, int(np.prod(self.shape[-2:])))
        pattern_bytes = flat.shape[1] * flat.itemsize
        fd = os.open(self.path, os.O_WRONLY)
        try:
            done = 0
            for first, count in runs:  # whole patterns, contiguous in the file: plain writes
                view = memoryview(flat[done:done + count]).cast("B")
                offset = HEADER_BYTES + first * pattern_bytes
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written
                done += count
        finally:
            os.close(fd)

    def _runs(self, key) -> list[tuple[int, int]] | None:
        """(first pattern, count) of each contiguous run of the file that region ``key`` covers,
        in the region's order; None when it does not hold whole patterns."""
        key = key if isinstance(key, tuple) else (key,)
        nav = len(self.shape) - 2
        bounds = []
        for axis, size in enumerate(self.shape):
            k = key[axis] if axis < len(key) else slice(None)
            if not isinstance(k, slice) or k.step not in (None, 1):
                return None
            start, stop, _ = k.indices(size)
            if axis >= nav and (start, stop) != (0, size):
                return None
            bounds.append((start, stop))
        if nav == 1:
            return [(bounds[0][0], bounds[0][1] - bounds[0][0])]
        (r0, r1), (c0, c1) = bounds[:2]
        nx = self.shape[1]
        if (c0, c1) == (0, nx):
            return [(r0 * nx, (r1 - r0) * nx)]
        return [(r * nx + c0, c1 - c0) for r in range(r0, r1)]


def _allocate(f, size: int) -> None:
    """Reserve the file's blocks now: a full disk is then an ENOSPC here, not a SIGBUS that kills
    the worker writing through the memmap later."""
    f.flush()
    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        f.truncate(size)  # a file system without fallocate: sparse file as before
    except AttributeError:  # no posix_fallocate on this platform (macOS)
        f.truncate(size)


def write_up2(path, patterns, step_x: float = 1.0, step_y: float = 1.0, *, client=None,
              progress: bool | None = None) -> Path:
    """Write ``patterns`` (…nav, sy, sx) to an EDAX UP2 file (uint16).

    ``patterns`` is a numpy or Dask array, (n, sy, sx) for a line scan or (ny, nx, sy, sx).
    uint8 input is widened to uint16 (values unchanged); other dtypes are refused: convert
    them yourself so that the scaling is your choice. A Dask array is computed chunk by chunk
    on ``client`` if given, else on the default Dask scheduler.
    """
    return _write_edax(path, patterns, step_x, step_y, np.dtype("<u2"), client, progress)


def write_up1(path, patterns, step_x: float = 1.0, step_y: float = 1.0, *, client=None,
              progress: bool | None = None) -> Path:
    """Write uint8 ``patterns`` (…nav, sy, sx) to an EDAX UP1 file (version 3 header)."""
    return _write_edax(path, patterns, step_x, step_y, np.dtype("u1"), client, progress)


def _write_edax(path, patterns, step_x, step_y, file_dtype: np.dtype, client, progress=None) -> Path:
    path = Path(path)
    shape = tuple(int(v) for v in patterns.shape)
    if len(shape) not in (3, 4):
        raise InputError(f"UP1/UP2 needs patterns shaped (n, sy, sx) or (ny, nx, sy, sx), got {shape}")
    source = np.dtype(patterns.dtype)
    kind = "UP2" if file_dtype.itemsize == 2 else "UP1"
    allowed = (np.dtype(np.uint8), np.dtype(np.uint16)) if kind == "UP2" else (np.dtype(np.uint8),)
    if source.newbyteorder("=") not in allowed:
        hint = " (UP1 is 8-bit: export .up2, .h5 or .tif to keep 16-bit data)" if kind == "UP1" else \
            " (convert to uint16 first, choosing the scaling)"
        raise InputError(f"cannot write {source} patterns to {kind}{hint}")
    sy, sx = shape[-2:]
    ny, nx = (1, shape[0]) if len(shape) == 3 else shape[:2]
    if len(shape) == 3:
        step_y = step_x  # a line scan has one step; kikuchipy reads a line scan's step from dy
    with open(path, "wb") as f:
        f.write(edax_header(sy, sx, ny, nx, float(step_x), float(step_y)))
        _allocate(f, HEADER_BYTES + int(np.prod(shape)) * file_dtype.itemsize)
    target = _BodyTarget(str(path), shape, file_dtype.str)
    if hasattr(patterns, "dask"):
        import dask.array as da

        if source != file_dtype:
            patterns = patterns.astype(file_dtype)
        stored = da.store(patterns, target, lock=False, compute=False)
        if client is not None:
            from kdeconv.cluster import compute

            compute(client, stored, progress=progress)
        else:
            stored.compute()
    else:
        target[...] = np.asarray(patterns).astype(file_dtype, copy=False)
    return path


def read_header(path: Path, plugin: str = "edax_binary", allow_size_mismatch: bool = False,
                notes: list[str] | None = None):
    """Layout and scan of a UP1/UP2 file, checked against its size."""
    from kdeconv._kikuchipy import plugin_reader

    EDAXBinaryFileReader = plugin_reader("edax_binary")

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


def _write(path, array, source: dict, *, suffix: str, client=None, cluster=None, progress=None,
           echo=print) -> Path:
    """``export``: a store array to UP2 (uint8 widened) or UP1, written by the cluster's workers."""
    import dask.array as da

    from kdeconv.cluster import client_for

    scan = source.get("scan") or {}
    steps = [float(scan[f"step_{k}"]) if scan.get(f"step_{k}") is not None else 1.0 for k in ("x", "y")]
    if suffix == ".up2" and np.dtype(array.dtype) == np.uint8:
        echo("note: uint8 patterns are written to UP2 as uint16 (values unchanged)")
    writer = write_up2 if suffix == ".up2" else write_up1
    with client_for(client, cluster, echo=echo) as client:
        return writer(path, da.from_zarr(array), *steps, client=client, progress=progress)


def _check_write(dtype: np.dtype, suffix: str) -> str | None:
    if suffix == ".up1" and dtype != np.uint8:
        return f"cannot export {dtype} patterns to UP1 (8-bit) without losing data: use .up2, .h5 or .tif"
    if suffix == ".up2" and dtype not in (np.uint8, np.uint16):
        return f"cannot export {dtype} patterns to UP2 (16-bit): use .h5 or .tif"
    return None


FORMAT = FormatSpec("edax_binary", "EDAX UP1 (8-bit) / UP2 (16-bit)", ("up1", "up2"), read_header=read_header,
                    kikuchipy_plugins=("edax_binary",), write=_write, write_extensions=("up1", "up2"),
                    check_write=_check_write,
                    write_itemsize=lambda dtype, suffix: 2 if suffix == ".up2" else dtype.itemsize)
