"""EMsoft simulated EBSD patterns, HDF5 (read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdeconv.io.formats import FormatSpec
from kdeconv.io.layouts import HDF5Layout

__all__ = ["FORMAT", "read_header"]


def read_header(path: Path, plugin: str = "emsoft_ebsd", allow_size_mismatch: bool = False,
                notes: list[str] | None = None):
    """Layout, scan and detector of EMsoft's simulated EBSD patterns (.h5)."""
    import h5py

    from kdeconv._kikuchipy import plugin_reader

    file_reader = plugin_reader("emsoft_ebsd")

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


FORMAT = FormatSpec("emsoft_ebsd", "EMsoft EBSD patterns (.h5)", ("h5", "hdf5"), read_header=read_header,
                    kikuchipy_plugins=("emsoft_ebsd",))
