"""The pickled Dask graph of an ingest does not grow with the file (>= 100 MB files, every format).

kikuchipy's own lazy UP2/.ebsp readers pickle the whole file into the graph, and its h5ebsd
readers cannot be pickled at all; kdeconv's readers carry only offsets and paths.
"""

from __future__ import annotations

import warnings

import cloudpickle
import numpy as np
import pytest
import tifffile
from io_testfiles import KP_DATA, enlarge_h5, made_h5ebsd, write_big_ebsp, write_big_nordif

from kdeconv.io import write_up1, write_up2
from kdeconv.io.ingest import lazy_patterns
from kdeconv.io.sources import open_source

pytestmark = pytest.mark.slow

ROWS, COLS = 100, 300  # 30 000 patterns of 60x60: 108 MB as uint8
MB = 2**20


def _pattern_stream(dtype, n, sig=(60, 60)):
    import dask.array as da

    index = da.arange(n, chunks=2000, dtype=np.uint32)[:, None, None]
    return ((index * 7 + da.arange(sig[0] * sig[1], dtype=np.uint32).reshape(1, *sig)) % 251).astype(dtype)


def _up2(tmp_path):
    write_up2(tmp_path / "big.up2", _pattern_stream(np.uint16, ROWS * COLS).reshape(ROWS, COLS, 60, 60))
    return tmp_path / "big.up2"


def _up1(tmp_path):
    write_up1(tmp_path / "big.up1", _pattern_stream(np.uint8, ROWS * COLS).reshape(ROWS, COLS, 60, 60))
    return tmp_path / "big.up1"


def _ebsp(tmp_path):
    write_big_ebsp(tmp_path / "big.ebsp", ROWS, COLS)
    return tmp_path / "big.ebsp"


def _nordif(tmp_path):
    return write_big_nordif(tmp_path / "nordif", ROWS, COLS)


def _tiff(tmp_path):
    path = tmp_path / "big.tif"
    data = _pattern_stream(np.uint8, ROWS * COLS).compute()
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def _h5(kind):
    def make(tmp_path):
        if kind == "kikuchipy_h5ebsd":
            return enlarge_h5(KP_DATA / "kikuchipy_h5ebsd" / "patterns.h5", tmp_path / "big.h5", ROWS, COLS,
                              "Scan 1/EBSD/Data/patterns", ("n_rows", "n_columns"))
        if kind == "edax_h5ebsd":
            return enlarge_h5(KP_DATA / "edax_h5ebsd" / "patterns.h5", tmp_path / "big.h5", ROWS, COLS,
                              "Scan 1/EBSD/Data/Pattern", ("nRows", "nColumns"))
        if kind == "emsoft_ebsd":  # 10x10 int64 patterns: 140 000 of them for 112 MB
            return enlarge_h5(KP_DATA / "emsoft_ebsd" / "simulated_ebsd.h5", tmp_path / "big.h5", 140, 1000,
                              "EMData/EBSD/EBSDPatterns", None)
        if kind == "bruker_h5ebsd":  # with a region of interest stored in reverse order
            small = made_h5ebsd("bruker_h5ebsd_roi", tmp_path)
            return enlarge_h5(small, tmp_path / "big.h5", ROWS, COLS, "Scan 0/EBSD/Data/RawPatterns",
                              ("NROWS", "NCOLS"))
        small = made_h5ebsd("oxford_h5ebsd", tmp_path)
        return enlarge_h5(small, tmp_path / "big.h5oina", ROWS, COLS, "1/EBSD/Data/Processed Patterns",
                          ("Y Cells", "X Cells"))
    return make


MAKERS = {
    "edax_up2": _up2, "edax_up1": _up1, "oxford_ebsp": _ebsp, "nordif": _nordif, "tiff": _tiff,
    **{kind: _h5(kind) for kind in ("kikuchipy_h5ebsd", "edax_h5ebsd", "bruker_h5ebsd",
                                    "oxford_h5ebsd", "emsoft_ebsd")},
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_graph_is_small_for_big_file(tmp_path, kind):
    path = MAKERS[kind](tmp_path)
    data_file = path if path.suffix != ".dat" else path
    size = data_file.stat().st_size
    assert size >= 100 * MB
    source = open_source(path)
    assert source.n_patterns * source.dtype.itemsize * int(np.prod(source.sig_shape)) >= 100 * MB
    patterns = lazy_patterns(source, chunk_mb=32)
    assert patterns.numblocks[0] > 1
    graph_bytes = len(cloudpickle.dumps(dict(patterns.__dask_graph__())))
    assert graph_bytes < MB, graph_bytes

    # and the last block holds the right patterns (kikuchipy's lazy reader is the oracle)
    import kikuchipy as kp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = kp.load(path, lazy=True).data if kind != "tiff" else None
    index = tuple(n - 1 for n in patterns.numblocks)
    got = patterns.blocks[index].compute(scheduler="sync")
    if expected is not None:
        assert expected.shape == patterns.shape
        slices = tuple(slice(sum(c[:i]), sum(c[: i + 1])) for c, i in zip(patterns.chunks, index))
        np.testing.assert_array_equal(got, expected[slices].compute(scheduler="sync"))
        del expected
    else:
        last = tifffile.imread(path, key=range(ROWS * COLS - 3, ROWS * COLS))
        np.testing.assert_array_equal(got.reshape(-1, 60, 60)[-3:], last)
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.stat().st_size > MB:
            p.unlink()  # keep pytest's retained tmp dirs small
