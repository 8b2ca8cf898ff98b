"""`kdeconv train` through the real CLI on a small `kdeconv generate` store, on the CPU: run,
resume, bad input."""

import csv
import hashlib
import json
import shutil

import pytest
import torch

from kdeconv.model import load_separator, read_checkpoint

DEBUG = "kdeconv/configs/train_debug.yaml"


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def first_run(debug_pairs, tmp_path_factory):
    from click.testing import CliRunner

    from kdeconv.cli import main

    out = tmp_path_factory.mktemp("runs") / "debug"
    result = CliRunner().invoke(main, ["train", "--config", DEBUG, "--data", str(debug_pairs),
                                       "--out", str(out), "--max-steps", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out, result


def test_train_writes_run_folder(first_run):
    out, result = first_run
    for name in ("last.pt", "best.pt", "metrics.csv", "curves.png", "config.yaml", "summary.json"):
        assert (out / name).is_file(), name
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["training_state"]["step"] == 3
    assert ckpt["train_config"]["batch_size"] == 8
    assert ckpt["normalization"]["method"] == "percentile"
    assert "val_loss" in ckpt["metrics"] and ckpt["kdeconv_version"]
    assert "training_state" not in read_checkpoint(out / "best.pt")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r["kind"] == "train"] == [1, 2, 3]
    assert json.loads((out / "summary.json").read_text())["stop_reason"] == "max_steps"
    assert "train (max_steps" in result.output
    # The run's best.pt is a working separator.
    a, b, w = load_separator(out / "best.pt", device="cpu").separate(
        torch.rand(2, 60, 60).numpy())
    assert a.shape == (2, 60, 60) and w.shape == (2, 2)


def test_resume_continues_step_count(first_run, cli, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run[0], out)
    before = _sha(out / "last.pt")
    result = cli("train", "--resume", "--out", out, "--max-steps", 5)
    assert result.exit_code == 0, result.output
    assert "from step 3 to at most 5" in result.output
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["training_state"]["step"] == 5
    assert _sha(out / "last.pt") != before
    steps = [int(r["step"]) for r in csv.DictReader((out / "metrics.csv").open()) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5]


def test_resume_is_exact(debug_pairs, cli, tmp_path):
    # 3 steps + resume to 5 must equal 5 steps straight: same weights (data order, RNG, optimiser).
    # Constant LR after warm-up, because the cosine is stretched over the budget by design.
    import yaml

    cfg = yaml.safe_load(open(DEBUG))
    cfg["min_lr_ratio"] = 1.0
    config = tmp_path / "constant_lr.yaml"
    config.write_text(yaml.safe_dump(cfg))
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    assert cli("train", "--config", config, "--data", debug_pairs, "--out", resumed,
               "--max-steps", 3).exit_code == 0
    assert cli("train", "--resume", "--out", resumed, "--max-steps", 5).exit_code == 0
    assert cli("train", "--config", config, "--data", debug_pairs, "--out", straight,
               "--max-steps", 5).exit_code == 0
    sa = read_checkpoint(resumed / "last.pt")["state_dict"]
    sb = read_checkpoint(straight / "last.pt")["state_dict"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=k)


def test_resume_corrupt_last_is_exit_2(first_run, cli, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run[0], out)
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 3])
    result = cli("train", "--resume", "--out", out)
    assert result.exit_code == 2
    assert "corrupt" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_usage_is_exit_2(first_run, debug_pairs, cli, tmp_path):
    out = first_run[0]
    # existing run folder without --resume/--overwrite
    r = cli("train", "--config", DEBUG, "--data", debug_pairs, "--out", out)
    assert r.exit_code == 2 and "already exists" in r.output
    # nothing to resume
    r = cli("train", "--resume", "--out", tmp_path / "nothing")
    assert r.exit_code == 2 and "nothing to resume" in r.output
    # not a pairs store
    r = cli("train", "--config", DEBUG, "--data", tmp_path / "missing.zarr", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "not found" in r.output
    assert not (tmp_path / "x").exists()
    # bad config value
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 0\n")
    r = cli("train", "--config", bad, "--data", debug_pairs, "--out", tmp_path / "y")
    assert r.exit_code == 2 and "batch_size" in r.output
    if not torch.cuda.is_available():
        r = cli("train", "--config", DEBUG, "--data", debug_pairs, "--out", tmp_path / "z",
                "--device", "cuda")
        assert r.exit_code == 2 and "CUDA is not available" in r.output


def test_precision_is_recorded_and_fp16_needs_cuda(debug_pairs, cli, tmp_path):
    # bf16 autocast runs on any CPU (natively with AMX, emulated elsewhere)
    out = tmp_path / "bf16"
    r = cli("train", "--config", DEBUG, "--data", debug_pairs, "--out", out, "--max-steps", 2,
            "--device", "cpu", "--precision", "bf16")
    assert r.exit_code == 0, r.output
    assert "device cpu (bf16)" in r.output
    assert json.loads((out / "summary.json").read_text())["precision"] == "bf16"
    assert read_checkpoint(out / "last.pt")["train_config"]["precision"] == "bf16"
    # precision may change on resume (like the device), e.g. when moving a run to another machine
    r = cli("train", "--resume", "--out", out, "--max-steps", 3, "--precision", "fp32")
    assert r.exit_code == 0, r.output
    assert "device cpu (fp32)" in r.output
    r = cli("train", "--config", DEBUG, "--data", debug_pairs, "--out", tmp_path / "fp16",
            "--max-steps", 2, "--device", "cpu", "--precision", "fp16")
    assert r.exit_code == 2 and "fp16 is for CUDA only" in r.output
    assert len(r.output.strip().splitlines()) == 1
