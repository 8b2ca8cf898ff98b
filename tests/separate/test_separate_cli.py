"""`kdeconv separate` on the real CLI: every bad input is one line and exit 2, nothing left behind."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from separate_maps import blobs, write_map


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def good_map(tmp_path):
    return write_map(tmp_path / "map.zarr", blobs((3, 4, 32, 32), np.uint16), (1, 4))


def assert_nothing_written(tmp_path):
    assert not list(tmp_path.glob("out.zarr*"))


def test_not_a_map_store(cli, tmp_path):
    import zarr

    from kdeconv.io.store import store_attrs

    pairs = zarr.open_group(str(tmp_path / "pairs.zarr"), mode="w")
    pairs.attrs.update(store_attrs("pairs"))
    line = error_line(cli("separate", tmp_path / "pairs.zarr", "--out", tmp_path / "out.zarr"))
    assert "expected a 'map' store" in line
    line = error_line(cli("separate", tmp_path / "nothing.zarr", "--out", tmp_path / "out.zarr"))
    assert "not found" in line
    vendor = tmp_path / "map.up2"
    vendor.write_bytes(b"\0" * 64)
    line = error_line(cli("separate", vendor, "--out", tmp_path / "out.zarr"))
    assert "is a file, not a Zarr store" in line and f"kdeconv ingest {vendor} map.zarr" in line
    assert vendor.read_bytes() == b"\0" * 64
    assert_nothing_written(tmp_path)


def test_one_pattern_map(cli, tmp_path):
    write_map(tmp_path / "one.zarr", blobs((1, 1, 32, 32), np.uint16), (1, 1))
    line = error_line(cli("separate", tmp_path / "one.zarr", "--out", tmp_path / "out.zarr"))
    assert "1 pattern" in line
    assert_nothing_written(tmp_path)


def test_shape_the_checkpoint_cannot_take(cli, tmp_path):
    write_map(tmp_path / "tiny.zarr", blobs((2, 2, 8, 8), np.uint16), (1, 2))
    line = error_line(cli("separate", tmp_path / "tiny.zarr", "--out", tmp_path / "out.zarr"))
    assert "cannot take patterns of shape (8, 8)" in line
    assert_nothing_written(tmp_path)


def test_a_checkpoint_and_a_shipped_model_together(cli, tmp_path, good_map):
    line = error_line(cli("separate", good_map, "--out", tmp_path / "out.zarr", "--model", "broad_looks",
                          "--checkpoint", tmp_path / "mine.pt"))
    assert "not both" in line
    assert_nothing_written(tmp_path)


def test_missing_and_corrupt_checkpoint(cli, tmp_path, good_map):
    line = error_line(cli("separate", good_map, "--out", tmp_path / "out.zarr",
                          "--checkpoint", tmp_path / "nope.pt"))
    assert "checkpoint not found" in line
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a torch file" * 100)
    line = error_line(cli("separate", good_map, "--out", tmp_path / "out.zarr", "--checkpoint", bad))
    assert "bad.pt" in line
    assert_nothing_written(tmp_path)


def test_cuda_without_cuda(cli, tmp_path, good_map):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = error_line(cli("separate", good_map, "--out", tmp_path / "out.zarr", "--device", "cuda"))
    assert "CUDA is not available" in line
    assert_nothing_written(tmp_path)


def test_fp16_on_cpu(cli, tmp_path, good_map):
    line = error_line(cli("separate", good_map, "--out", tmp_path / "out.zarr", "--device", "cpu",
                          "--precision", "fp16"))
    assert "fp16 is for CUDA only" in line
    assert_nothing_written(tmp_path)


def test_bad_residual_pass(cli, tmp_path, good_map):
    for value in ("0.7", "twice"):
        line = error_line(cli("separate", good_map, "--out", tmp_path / "out.zarr", "--residual-pass", value))
        assert "--residual-pass" in line and "'off'" in line
    assert_nothing_written(tmp_path)


def test_existing_output_and_bad_config(cli, tmp_path, good_map):
    (tmp_path / "out.zarr").mkdir()
    line = error_line(cli("separate", good_map, "--out", tmp_path / "out.zarr"))
    assert "--overwrite" in line
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 0\n")
    line = error_line(cli("separate", good_map, "--out", tmp_path / "o2.zarr", "--config", cfg))
    assert "batch_size" in line


def test_separate_cli_runs_and_resumes_with_overwrite(cli, tmp_path, good_map, dask_processes):
    sched = str(dask_processes[1])
    out = tmp_path / "out.zarr"
    result = cli("separate", good_map, "--out", out, "--batch-size", "4", "--scheduler-file", sched,
                 "--config", "kdeconv/configs/separate.yaml")
    assert result.exit_code == 0, result.output
    assert "separate -> " in result.output and "12 patterns" in result.output
    assert (tmp_path / "out.zarr.weights.png").exists() and (tmp_path / "out.zarr.panels.png").exists()
    assert zarr.open_group(str(out), mode="r").attrs["config"]["residual_pass"] == 0.2
    assert zarr.open_group(str(out), mode="r").attrs["preprocessing"]["background"]["mask"] == "none"
    result = cli("separate", good_map, "--out", out, "--overwrite", "--scheduler-file", sched,
                 "--residual-pass", "off", "--mask", "circle")
    assert result.exit_code == 0 and "12 patterns" in result.output
    assert "patterns masked to the inscribed circle first (as asked)" in result.output
    store = zarr.open_group(str(out), mode="r")
    assert store.attrs["config"]["residual_pass"] is None
    assert store.attrs["preprocessing"]["background"]["mask"] == "circle"
    from kdeconv.preprocess import circular_mask

    assert (np.asarray(store["A"][...])[..., ~circular_mask((32, 32))] == 0).all()
    result = cli("separate", good_map, "--out", out, "--overwrite", "--scheduler-file", sched,
                 "--residual-pass", "off", "--screen", "4,2,24")
    assert result.exit_code == 0 and "12 patterns" in result.output
    assert "patterns cut to the screen's 24x24 square at row 4, column 2" in result.output
    store = zarr.open_group(str(out), mode="r")
    assert store.attrs["preprocessing"]["background"]["screen"] == [4, 2, 24]
    assert store["static_background"].shape == (24, 24)
    a = np.asarray(store["A"][...])
    assert a.shape[-2:] == (32, 32) and (a[..., :4, :] == 0).all() and (a[..., 28:, :] == 0).all()
    assert (a[..., 4:28, 2:26][..., circular_mask((24, 24))] > 0).mean() > 0.5
    for bad in ("4,2", "a,b,c", "20,20,24"):
        result = cli("separate", good_map, "--out", tmp_path / "bad.zarr", "--screen", bad)
        assert result.exit_code == 2 and result.output.count("Error:") == 1, result.output
        assert "Traceback" not in result.output


def test_relative_paths_work_on_workers_with_another_cwd(cli, tmp_path, good_map, dask_processes,
                                                         monkeypatch):
    import zarr

    from kdeconv.model import DEFAULT_CHECKPOINT, set_claim_rule

    # The model's claim rule travels with its outputs, for evaluate.
    set_claim_rule(DEFAULT_CHECKPOINT, tmp_path / "model.pt", 0.04, 0.25)
    monkeypatch.chdir(tmp_path)  # the dask worker processes run in another directory
    result = cli("separate", "map.zarr", "--out", "rel.zarr", "--checkpoint", "model.pt",
                 "--scheduler-file", str(dask_processes[1]))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rel.zarr" / "A").is_dir() and not (tmp_path / "rel.zarr.partial").exists()
    assert zarr.open_group(str(tmp_path / "rel.zarr"), mode="r").attrs["claim_rule"] == {
        "claim_weight": 0.04, "claim_min_cm": 0.25}
