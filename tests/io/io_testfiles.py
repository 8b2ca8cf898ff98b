"""Makers of test inputs for tests/io (big files are written without holding them in memory)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import kikuchipy
import numpy as np

KP_DATA = Path(kikuchipy.__file__).parent / "data"

# (name, relative path or maker) of every kikuchipy test file that kdeconv must ingest exactly.
BUNDLED = {
    "edax_up1": "edax_binary/edax_binary.up1",
    "edax_up2": "edax_binary/edax_binary.up2",
    "oxford_ebsp": "oxford_binary/patterns.ebsp",
    "nordif": "nordif/Pattern.dat",
    "kikuchipy_h5ebsd": "kikuchipy_h5ebsd/patterns.h5",
    "edax_h5ebsd": "edax_h5ebsd/patterns.h5",
    "emsoft_ebsd": "emsoft_ebsd/simulated_ebsd.h5",
}


def made_h5ebsd(kind: str, folder: Path) -> Path:
    """Bruker or Oxford h5ebsd from kikuchipy's own dummy-file creators."""
    if kind == "bruker_h5ebsd":
        from kikuchipy.data._dummy_files.bruker_h5ebsd import create_dummy_bruker_h5ebsd_file

        path = folder / "bruker.h5"
        create_dummy_bruker_h5ebsd_file(path)
    elif kind == "bruker_h5ebsd_roi":
        from kikuchipy.data._dummy_files.bruker_h5ebsd import create_dummy_bruker_h5ebsd_roi_file

        path = folder / "bruker_roi.h5"
        create_dummy_bruker_h5ebsd_roi_file(path)
    else:
        from kikuchipy.data._dummy_files.oxford_h5ebsd import create_dummy_oxford_h5ebsd_file

        path = folder / "oxford.h5oina"
        create_dummy_oxford_h5ebsd_file(path)
    return path


def known_uint16(shape: tuple[int, ...]) -> np.ndarray:
    """uint16 patterns with known values that use the full 16-bit range (both ends)."""
    values = (np.arange(int(np.prod(shape)), dtype=np.uint64) * 2654435761) % 65536
    data = values.astype(np.uint16).reshape(shape)
    data.flat[0], data.flat[-1] = 0, 65535
    return data


def write_big_ebsp(path: Path, n_rows: int, n_cols: int, sig=(60, 60)) -> np.ndarray:
    """An Oxford .ebsp (version 2) with patterns stored out of map order, as kikuchipy's own
    test file; returns the patterns in map order (uint8)."""
    n = n_rows * n_cols
    sy, sx = sig
    header, footer = 16, 18
    record = header + sy * sx + footer
    first = 8 + 8 * n
    # record k holds map position file_order[k]: neighbours swapped, so not in map order
    # (kikuchipy's small test file rolls the order by one, but on a big file that breaks
    # kikuchipy's guess of the pattern count from jumps in the offset table)
    file_order = np.arange(n).reshape(-1, 2)[:, ::-1].ravel() if n % 2 == 0 else np.arange(n)
    starts = np.empty(n, np.int64)
    starts[file_order] = first + np.arange(n) * record
    rec = np.zeros(n, dtype=[("h", "<i4", 4), ("p", "u1", (sy, sx)), ("hx", "?"), ("bx", "<f8"),
                             ("hy", "?"), ("by", "<f8")])
    maps = (np.arange(n, dtype=np.uint64)[:, None, None] * 7 + np.arange(sy * sx).reshape(1, sy, sx)) % 251
    maps = maps.astype(np.uint8)
    rows, cols = np.unravel_index(file_order, (n_rows, n_cols))
    rec["h"] = [0, sy, sx, sy * sx]
    rec["p"] = maps[file_order]
    rec["hx"], rec["bx"], rec["hy"], rec["by"] = True, cols * 1.5, True, rows * 1.5
    with open(path, "wb") as f:
        np.array(-2, np.int64).tofile(f)
        starts.tofile(f)
        rec.tofile(f)
    return maps.reshape(n_rows, n_cols, sy, sx)


def write_big_nordif(folder: Path, n_rows: int, n_cols: int, sig=(60, 60)) -> Path:
    """NORDIF Pattern.dat + Setting.txt (from kikuchipy's, with the grid changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    setting = (KP_DATA / "nordif" / "Setting.txt").read_text(encoding="latin-1")
    setting = re.sub(r"Number of samples\t\d+x\d+", f"Number of samples\t{n_rows}x{n_cols}", setting)
    (folder / "Setting.txt").write_text(setting, encoding="latin-1")
    shutil.copy(KP_DATA / "nordif" / "Background acquisition pattern.bmp", folder)
    path = folder / "Pattern.dat"
    with open(path, "wb") as f:
        f.truncate(n_rows * n_cols * sig[0] * sig[1])
    return path


def enlarge_h5(small: Path, big: Path, n_rows: int, n_cols: int, dataset: str,
               nav_keys: tuple[str, str] | None) -> Path:
    """Copy an h5ebsd/EMsoft test file and grow its pattern dataset (and per-pattern arrays) to
    n_rows x n_cols patterns of the same size; the header is updated to the new grid."""
    shutil.copy(small, big)
    n = n_rows * n_cols
    with h5py.File(big, "r+") as f:
        old = f[dataset]
        n_small, sig, dtype = old.shape[0], old.shape[1:], old.dtype
        scan = dataset.split("/")[0] if "/EBSD/Data/" in dataset else ""
        per_pattern = []
        f.visititems(lambda name, obj: per_pattern.append(name) if isinstance(obj, h5py.Dataset)
                     and name != dataset and obj.ndim >= 1 and obj.shape[0] == n_small
                     and name.startswith(scan) else None)
        for name in per_pattern:
            values = f[name][()]
            del f[name]
            f.create_dataset(name, data=np.resize(values, (n,) + values.shape[1:]))
        del f[dataset]
        per_chunk = max(1, 2**20 // (int(np.prod(sig)) * np.dtype(dtype).itemsize))
        new = f.create_dataset(dataset, shape=(n,) + sig, dtype=dtype, chunks=(per_chunk,) + sig)
        block = np.arange(int(np.prod(sig)) * 1000, dtype=np.uint64).reshape((1000,) + sig) % 200
        for start in range(0, n, 1000):
            stop = min(n, start + 1000)
            new[start:stop] = block[: stop - start].astype(dtype)
        roi = dataset.split("/EBSD/")[0] + "/EBSD/SEM/"
        if roi + "IY" in f:  # Bruker region of interest: patterns stored in reverse map order
            rows, cols = np.unravel_index(np.arange(n)[::-1], (n_rows, n_cols))
            for key, values in (("IY", rows + 5), ("IX", cols + 7)):
                dtype_roi = f[roi + key].dtype
                del f[roi + key]
                f.create_dataset(roi + key, data=values.astype(dtype_roi))
        if nav_keys is not None:
            header = dataset.split("/EBSD/")[0] + "/EBSD/Header/"
            for key, value in zip(nav_keys, (n_rows, n_cols)):
                f[header + key][()] = value
    return big
