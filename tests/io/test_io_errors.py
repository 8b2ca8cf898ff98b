"""Bad input: exit 2, one line on stderr, and no output that looks complete."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from io_testfiles import KP_DATA, known_uint16

from kdeconv.io import write_up2


def _assert_input_error(result, *needles, outputs=()):
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    for path in outputs:
        assert not path.exists()
        assert not path.with_name(path.name + ".partial").exists()
    return lines[0]


@pytest.fixture
def small_map(cli, dask_processes, tmp_path):
    up2 = write_up2(tmp_path / "m.up2", known_uint16((2, 3, 8, 6)))
    result = cli("ingest", up2, tmp_path / "m.zarr", "--scheduler-address", dask_processes[0])
    assert result.exit_code == 0, result.stderr
    return tmp_path / "m.zarr"


def test_missing_input(cli, tmp_path):
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", tmp_path / "nope.up2", out), "not found", outputs=[out])


def test_unsupported_input_extension(cli, tmp_path):
    path = tmp_path / "patterns.xyz"
    path.write_bytes(b"\0" * 100)
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", path, out), "unsupported", outputs=[out])


def test_truncated_up2(cli, tmp_path):
    path = write_up2(tmp_path / "t.up2", known_uint16((3, 4, 8, 6)))
    path.write_bytes(path.read_bytes()[:-100])
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", path, out), "truncated", outputs=[out])


def test_nav_shape_mismatch(cli, tmp_path):
    path = write_up2(tmp_path / "l.up2", known_uint16((12, 8, 6)))
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", path, out, "--nav-shape", 5, 3), "--nav-shape", "12",
                        outputs=[out])


def test_empty_image_folder(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", tmp_path / "empty", out), "no PNG/TIFF", outputs=[out])


def test_images_of_mixed_shapes(cli, dask_processes, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    tifffile.imwrite(folder / "p1.tif", np.zeros((10, 10), np.uint16))
    tifffile.imwrite(folder / "p2.tif", np.zeros((10, 12), np.uint16))
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", folder, out, "--scheduler-address", dask_processes[0]),
                        "mixed shapes", "p2.tif", outputs=[out])


def test_existing_output_needs_overwrite(cli, dask_processes, small_map, tmp_path):
    up2 = tmp_path / "m.up2"
    before = sorted(p.name for p in small_map.rglob("*"))
    _assert_input_error(cli("ingest", up2, small_map), "already exists", "--overwrite")
    assert sorted(p.name for p in small_map.rglob("*")) == before  # nothing lost
    out = tmp_path / "x.up2"
    out.write_bytes(b"keep me")
    _assert_input_error(cli("export", small_map, out), "already exists")
    assert out.read_bytes() == b"keep me"
    result = cli("ingest", up2, small_map, "--overwrite", "--scheduler-address", dask_processes[0])
    assert result.exit_code == 0, result.stderr


def test_unreachable_scheduler(cli, tmp_path):
    up2 = write_up2(tmp_path / "m.up2", known_uint16((2, 8, 6)))
    out = tmp_path / "o.zarr"
    # port 9 (discard) on localhost: nothing listens; the connect timeout (10 s) bounds the wait
    _assert_input_error(cli("ingest", up2, out, "--scheduler-address", "tcp://127.0.0.1:9"),
                        "cannot reach scheduler", outputs=[out])


def test_unknown_array(cli, small_map, tmp_path):
    out = tmp_path / "a.h5"
    _assert_input_error(cli("export", small_map, out, "--array", "A"), "no array 'A'", "patterns",
                        outputs=[out])


def test_unsupported_output_extension(cli, small_map, tmp_path):
    out = tmp_path / "a.png"
    _assert_input_error(cli("export", small_map, out), "unsupported output extension", outputs=[out])


def test_uint16_to_up1_is_refused(cli, small_map, tmp_path):
    out = tmp_path / "a.up1"
    _assert_input_error(cli("export", small_map, out), "UP1", "uint16", outputs=[out])


def test_missing_store(cli, tmp_path):
    out = tmp_path / "a.up2"
    _assert_input_error(cli("export", tmp_path / "none.zarr", out), "not found", outputs=[out])


def test_not_a_pattern_file(cli, tmp_path):
    path = tmp_path / "fake.h5"
    path.write_bytes(b"this is not hdf5")
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", path, out), outputs=[out])
    master = KP_DATA / "emsoft_ebsd_master_pattern" / "master_patterns.h5"
    _assert_input_error(cli("ingest", master, out), "not an EBSD pattern format", outputs=[out])


def test_non_pattern_array_is_refused(cli, small_map, tmp_path):
    import zarr

    group = zarr.open_group(str(small_map), mode="r+")
    group.create_array("weights", data=np.full((2, 3, 2), 0.5, np.float32))
    out = tmp_path / "w.tif"
    _assert_input_error(cli("export", small_map, out, "--array", "weights"), "not a pattern", outputs=[out])


def test_8bit_file_where_16bit_was_promised(cli, tmp_path):
    up1 = KP_DATA / "edax_binary" / "edax_binary.up1"  # uint8 patterns
    out = tmp_path / "o.zarr"
    line = _assert_input_error(cli("ingest", up1, out, "--dtype", "uint16", "--workers", 1),
                               "uint8", "uint16", outputs=[out])
    assert "converted" in line


def test_promised_dtype_that_matches_is_accepted(cli, tmp_path):
    up2 = write_up2(tmp_path / "m.up2", known_uint16((2, 3, 8, 6)))
    result = cli("ingest", up2, tmp_path / "o.zarr", "--dtype", "uint16", "--workers", 1)
    assert result.exit_code == 0, result.stderr


def test_nan_patterns_are_refused(cli, tmp_path):
    import kikuchipy as kp

    data = np.full((2, 3, 8, 6), 0.5, np.float32)
    data[1, 2, 3, 3] = np.nan
    path = tmp_path / "float.h5"
    kp.signals.EBSD(data).save(path)
    out = tmp_path / "o.zarr"
    _assert_input_error(cli("ingest", path, out, "--workers", 1), "NaN", "(1, 2)", outputs=[out])
