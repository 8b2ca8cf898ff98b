"""Per-chunk readers on small hand-made files (no Dask, no kikuchipy)."""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest

from kdeconv.errors import InputError
from kdeconv.io.formats.edax_binary import HEADER_BYTES, edax_header
from kdeconv.io.ingest import read_block
from kdeconv.io.layouts import (
    HDF5Layout,
    OffsetTableLayout,
    RawLayout,
    natural_key,
    read_patterns,
)

SIG = (3, 4)


def _patterns(n, dtype=np.uint16):
    return (np.arange(n * 12, dtype=np.uint32) * 1031 % np.iinfo(dtype).max).astype(dtype).reshape(n, *SIG)


def test_raw_records_with_header_and_footer(tmp_path):
    data = _patterns(5)
    path = tmp_path / "records.bin"
    with open(path, "wb") as f:
        f.write(b"H" * 10)  # file header
        for p in data:
            f.write(b"hhh" + p.astype("<u2").tobytes() + b"ffff")
    layout = RawLayout(str(path), 10, 5, SIG, "<u2", record_bytes=3 + 24 + 4, skip=3)
    np.testing.assert_array_equal(read_patterns(layout, 1, 3), data[1:4])
    np.testing.assert_array_equal(read_patterns(layout, 0, 5), data)


def test_raw_big_endian_is_read_as_native_values(tmp_path):
    data = _patterns(2)
    path = tmp_path / "be.bin"
    path.write_bytes(data.astype(">u2").tobytes())
    got = read_patterns(RawLayout(str(path), 0, 2, SIG, ">u2"), 0, 2)
    assert got.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(got, data)


def test_raw_truncated_file_is_input_error(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(_patterns(3).tobytes()[:-1])
    with pytest.raises(InputError, match="truncated"):
        read_patterns(RawLayout(str(path), 0, 3, SIG, "<u2"), 1, 2)


def test_offset_table_gives_map_order(tmp_path):
    data = _patterns(4, np.uint8)
    header, record = 2, 2 + 12
    table_at, first = 8, 8 + 4 * 8
    file_order = [2, 0, 3, 1]  # record k holds map position file_order[k]
    starts = np.empty(4, "<i8")
    for k, j in enumerate(file_order):
        starts[j] = first + k * record
    with open(tmp_path / "t.ebsp", "wb") as f:
        f.write(b"V" * 8 + starts.tobytes())
        for j in file_order:
            f.write(b"hh" + data[j].tobytes())
    layout = OffsetTableLayout(str(tmp_path / "t.ebsp"), table_at, 4, SIG, "|u1", skip=header)
    np.testing.assert_array_equal(read_patterns(layout, 0, 4), data)
    np.testing.assert_array_equal(read_patterns(layout, 2, 2), data[2:])


@pytest.mark.parametrize("stored_shape", [(6, 3, 4), (6, 12), (72,)])
def test_hdf5_dataset_shapes(tmp_path, stored_shape):
    data = _patterns(6)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f.create_dataset("g/patterns", data=data.reshape(stored_shape), chunks=True)
    layout = HDF5Layout(str(tmp_path / "p.h5"), "g/patterns", 6, SIG, "<u2")
    np.testing.assert_array_equal(read_patterns(layout, 2, 3), data[2:5])


def test_hdf5_bruker_roi_order(tmp_path):
    data = _patterns(6)
    # stored in file order; IY/IX say where each sits in a 2x3 map starting at (4, 10)
    rows, cols = np.array([1, 0, 1, 0, 0, 1]), np.array([2, 0, 0, 1, 2, 1])
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["Scan 0/EBSD/Data/RawPatterns"] = data
        f["Scan 0/EBSD/SEM/IY"] = rows + 4
        f["Scan 0/EBSD/SEM/IX"] = cols + 10
    layout = HDF5Layout(str(tmp_path / "b.h5"), "Scan 0/EBSD/Data/RawPatterns", 6, SIG, "<u2",
                        bruker_group="Scan 0")
    expected = np.empty_like(data)
    expected[rows * 3 + cols] = data
    np.testing.assert_array_equal(read_patterns(layout, 0, 6), expected)
    np.testing.assert_array_equal(read_patterns(layout, 4, 2), expected[4:])


def test_read_block_pieces_of_rows(tmp_path):
    data = _patterns(12).reshape(3, 4, *SIG)
    path = tmp_path / "m.bin"
    path.write_bytes(data.tobytes())
    layout = RawLayout(str(path), 0, 12, SIG, "<u2")
    info = {None: {"array-location": [(1, 3), (1, 3), (0, 3), (0, 4)]}}
    np.testing.assert_array_equal(read_block(layout, data.shape, block_info=info), data[1:3, 1:3])
    info = {None: {"array-location": [(1, 3), (0, 4), (0, 3), (0, 4)]}}
    np.testing.assert_array_equal(read_block(layout, data.shape, block_info=info), data[1:3])


def test_natural_sort():
    names = ["p10.png", "p2.png", "P1.png", "p1b.png"]
    assert sorted(names, key=natural_key) == ["P1.png", "p1b.png", "p2.png", "p10.png"]


def test_edax_header_layout():
    header = edax_header(sy=60, sx=80, ny=3, nx=5, step_x=0.5, step_y=0.25)
    assert len(header) == HEADER_BYTES == 42
    assert struct.unpack_from("<IIII", header, 0) == (3, 80, 60, 42)
    assert struct.unpack_from("<II", header, 17) == (5, 3)
    assert header[25] == 0  # not a hexagonal grid
    assert struct.unpack_from("<dd", header, 26) == (0.5, 0.25)


def test_offset_table_far_apart_records(tmp_path):
    """Records scattered over a large file are read one by one (no huge spanning read)."""
    data = _patterns(3, np.uint8)
    gap = 3 * 2**20
    starts = np.array([8 + 3 * 8 + 2 * gap, 8 + 3 * 8, 8 + 3 * 8 + gap], "<i8")
    with open(tmp_path / "s.ebsp", "wb") as f:
        f.write(b"V" * 8 + starts.tobytes())
        for j in (1, 2, 0):
            f.seek(int(starts[j]))
            f.write(b"hh" + data[j].tobytes())
    layout = OffsetTableLayout(str(tmp_path / "s.ebsp"), 8, 3, SIG, "|u1", skip=2)
    np.testing.assert_array_equal(read_patterns(layout, 0, 3), data)
