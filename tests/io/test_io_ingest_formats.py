"""Every kikuchipy test file through `kdeconv ingest`: the Zarr `patterns` equal kikuchipy.load(file).data.

These run on the real scheduler + worker processes of the `dask_processes` fixture (one cluster
for the test run), which is also what `--scheduler-address` users get.
"""

from __future__ import annotations

import warnings

import kikuchipy as kp
import numpy as np
import pytest
import zarr
from io_testfiles import BUNDLED, KP_DATA, made_h5ebsd


def _kikuchipy_data(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kp.load(path).data


def _ingest_and_compare(cli, path, out, address):
    result = cli("ingest", path, out, "--scheduler-address", address, "--chunk-mb", "0.02")
    assert result.exit_code == 0, result.output + result.stderr
    assert "patterns in" in result.output  # the summary line
    group = zarr.open_group(str(out), mode="r")
    stored = group["patterns"]
    expected = _kikuchipy_data(path)
    assert stored.dtype == expected.dtype
    assert stored.shape == expected.shape
    np.testing.assert_array_equal(stored[...], expected)
    # chunked along navigation axes only, several chunks (0.02 MB)
    assert stored.chunks[-2:] == expected.shape[-2:]
    assert group.attrs["kdeconv_kind"] == "map"
    return group


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_file_ingests_exactly(cli, dask_processes, tmp_path, name):
    address, _ = dask_processes
    group = _ingest_and_compare(cli, KP_DATA / BUNDLED[name], tmp_path / "map.zarr", address)
    source = group.attrs["source"]
    assert source["format"] == name.replace("edax_up1", "edax_binary").replace("edax_up2", "edax_binary") \
        .replace("oxford_ebsp", "oxford_binary")
    assert source["scan"]["step_x"] > 0 and source["scan"]["unit"]


@pytest.mark.parametrize("kind", ["bruker_h5ebsd", "bruker_h5ebsd_roi", "oxford_h5ebsd"])
def test_dummy_h5ebsd_ingests_exactly(cli, dask_processes, tmp_path, kind):
    address, _ = dask_processes
    path = made_h5ebsd(kind, tmp_path)
    group = _ingest_and_compare(cli, path, tmp_path / "map.zarr", address)
    assert group.attrs["source"]["detector"]["shape"] == [60, 60]


def test_metadata_kept(cli, dask_processes, tmp_path):
    """Scan step, unit and detector from the reader end up in attrs."""
    address, _ = dask_processes
    path = KP_DATA / "kikuchipy_h5ebsd" / "patterns.h5"
    group = _ingest_and_compare(cli, path, tmp_path / "map.zarr", address)
    signal = kp.load(path, lazy=True)
    source = group.attrs["source"]
    assert source["scan"] == {"step_y": 1.5, "step_x": 1.5, "unit": "um"}
    detector = source["detector"]
    np.testing.assert_allclose(np.asarray(detector["pc"]), signal.detector.pc)
    assert detector["sample_tilt"] == signal.detector.sample_tilt
    assert detector["tilt"] == signal.detector.tilt
    assert detector["binning"] == signal.detector.binning
