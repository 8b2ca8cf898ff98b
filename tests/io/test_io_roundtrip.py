"""Lossless 16-bit round trips: UP2 -> ingest -> export .up2 / .h5 / .tif, read back with kikuchipy."""

from __future__ import annotations

import warnings

import imageio.v3 as iio
import kikuchipy as kp
import numpy as np
import pytest
import tifffile
import zarr
from io_testfiles import known_uint16

from kdeconv.io import write_up1, write_up2

SHAPE = (4, 5, 30, 40)  # ny, nx, sy, sx


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kp.load(path)


def _ok(result):
    assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture(scope="module")
def up2_map(tmp_path_factory):
    """A uint16 UP2 with known values and scan steps, ingested once on a default LocalCluster."""
    from click.testing import CliRunner

    from kdeconv.cli import main

    folder = tmp_path_factory.mktemp("roundtrip")
    data = known_uint16(SHAPE)
    up2 = write_up2(folder / "map.up2", data, step_x=0.5, step_y=0.25)
    result = CliRunner().invoke(main, ["ingest", str(up2), str(folder / "map.zarr"), "--workers", "1",
                                       "--chunk-mb", "0.01"])
    _ok(result)
    assert "LocalCluster" in result.output
    return folder, data, up2, folder / "map.zarr"


def test_write_up2_is_read_by_kikuchipy(up2_map):
    _, data, up2, _ = up2_map
    signal = _load(up2)
    assert signal.data.dtype == np.uint16
    np.testing.assert_array_equal(signal.data, data)
    assert signal.axes_manager["x"].scale == 0.5 and signal.axes_manager["y"].scale == 0.25


def test_ingest_keeps_uint16_and_attrs(up2_map):
    _, data, _, store = up2_map
    group = zarr.open_group(str(store), mode="r")
    assert group["patterns"].dtype == np.uint16
    np.testing.assert_array_equal(group["patterns"][...], data)
    assert group.attrs["source"]["scan"] == {"step_y": 0.25, "step_x": 0.5, "unit": "um"}
    # 0.01 MB holds 4 patterns < a row of 5: rows split in even pieces, patterns whole
    assert group["patterns"].chunks == (1, 3, 30, 40)


def test_export_up2_gives_identical_bytes(cli, up2_map):
    folder, data, up2, store = up2_map
    out = folder / "again.up2"
    _ok(cli("export", store, out, "--workers", "1"))
    assert out.read_bytes() == up2.read_bytes()
    np.testing.assert_array_equal(_load(out).data, data)


def test_export_h5_roundtrip_keeps_scan_and_detector(cli, up2_map, tmp_path):
    folder, data, _, store = up2_map
    # a detector in attrs, as a vendor reader would give it
    group = zarr.open_group(str(store), mode="r+")
    source = dict(group.attrs["source"])
    source["detector"] = {"shape": [30, 40], "pc": [0.42, 0.21, 0.5], "tilt": 5.0, "sample_tilt": 70.0,
                          "binning": 2, "px_size": 1.0, "azimuthal": 0.0, "twist": 0.0}
    group.attrs["source"] = source
    out = tmp_path / "map.h5"
    _ok(cli("export", store, out))
    signal = _load(out)
    assert signal.data.dtype == np.uint16
    np.testing.assert_array_equal(signal.data, data)
    assert signal.axes_manager["x"].scale == 0.5 and signal.axes_manager["y"].scale == 0.25
    np.testing.assert_allclose(signal.detector.pc.reshape(-1, 3)[0], [0.42, 0.21, 0.5])
    assert signal.detector.tilt == 5.0 and signal.detector.sample_tilt == 70.0
    assert signal.detector.binning == 2


def test_export_tif_roundtrip(cli, up2_map, tmp_path):
    _, data, _, store = up2_map
    out = tmp_path / "map.tif"
    _ok(cli("export", store, out))
    pages = tifffile.imread(out)
    assert pages.dtype == np.uint16
    np.testing.assert_array_equal(pages.reshape(data.shape), data)
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == 20
    # ingest with the same nav shape (and without: the grid is in the TIFF description)
    for extra, name in (((), "a.zarr"), (("--nav-shape", 4, 5), "b.zarr")):
        _ok(cli("ingest", out, tmp_path / name, "--workers", "1", *extra))
        back = zarr.open_group(str(tmp_path / name), mode="r")
        np.testing.assert_array_equal(back["patterns"][...], data)
        assert back.attrs["source"]["scan"]["step_x"] == 0.5


def test_export_up1_from_uint8(cli, tmp_path):
    data = (known_uint16((3, 20, 10)) % 256).astype(np.uint8)
    up1 = write_up1(tmp_path / "line.up1", data, step_x=2.0)
    np.testing.assert_array_equal(_load(up1).data, data)
    _ok(cli("ingest", up1, tmp_path / "line.zarr", "--workers", "1"))
    _ok(cli("export", tmp_path / "line.zarr", tmp_path / "again.up1", "--workers", "1"))
    assert (tmp_path / "again.up1").read_bytes() == up1.read_bytes()


def test_write_up2_from_dask_line_scan(tmp_path):
    import dask.array as da

    data = known_uint16((7, 12, 9))
    path = write_up2(tmp_path / "line.up2", da.from_array(data, chunks=(3, 12, 9)), step_x=1.5)
    loaded = _load(path)
    np.testing.assert_array_equal(loaded.data, data)
    assert loaded.axes_manager["x"].scale == 1.5


def test_line_scan_regridded_with_nav_shape(cli, dask_processes, tmp_path):
    data = known_uint16((12, 8, 6))
    path = write_up2(tmp_path / "line.up2", data)
    _ok(cli("ingest", path, tmp_path / "m.zarr", "--nav-shape", 3, 4,
            "--scheduler-file", dask_processes[1]))
    stored = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")["patterns"]
    np.testing.assert_array_equal(stored[...], data.reshape(3, 4, 8, 6))


def test_png16_folder_natural_order(cli, dask_processes, tmp_path):
    data = known_uint16((12, 16, 20))
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, pattern in enumerate(data):
        iio.imwrite(folder / f"pattern_{i + 1}.png", pattern)  # 1..12: 10 sorts after 9
    (folder / "notes.txt").write_text("not an image")
    _ok(cli("ingest", folder, tmp_path / "m.zarr", "--nav-shape", 3, 4,
            "--scheduler-address", dask_processes[0], "--chunk-mb", "0.002"))
    stored = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")["patterns"]
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored[...], data.reshape(3, 4, 16, 20))


def test_tiff8_folder_and_compressed_multipage_tiff(cli, dask_processes, tmp_path):
    data = (known_uint16((5, 16, 20)) % 256).astype(np.uint8)
    folder = tmp_path / "tifs"
    folder.mkdir()
    for i, pattern in enumerate(data):
        tifffile.imwrite(folder / f"p{i:03d}.tif", pattern)
    _ok(cli("ingest", folder, tmp_path / "a.zarr", "--scheduler-address", dask_processes[0]))
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "a.zarr"))["patterns"][...], data)
    # pages compressed and written one by one by another tool: read page by page
    multi = tmp_path / "multi.tiff"
    with tifffile.TiffWriter(multi) as tif:
        for pattern in data:
            tif.write(pattern, compression="zlib")
    _ok(cli("ingest", multi, tmp_path / "b.zarr", "--scheduler-address", dask_processes[0],
            "--chunk-mb", "0.0005"))
    stored = zarr.open_group(str(tmp_path / "b.zarr"))["patterns"]
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored[...], data)
