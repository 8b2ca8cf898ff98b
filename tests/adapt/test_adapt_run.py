"""kdeconv adapt end to end on a tiny simulated map: provenance, the grain-level split, the
refusals, and the adapted checkpoint in `separate --checkpoint` and `separate --adapt`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdeconv.adapt.driver import split_groups
from kdeconv.config.claim import PURE_PASS, rule_from_held_out, separating_bar
from kdeconv.errors import InputError

KDECONV = str(Path(sys.executable).parent / "kdeconv")
FAST = {"n_pairs": 96, "n_val_pairs": 32, "max_steps": 4, "steps_per_epoch": 2, "batch_size": 8,
        "search": {"min_grains": 4, "n_max": 40, "per_grain": 4, "min_distance": 1.0},
        "precision": "fp32"}


def test_the_split_holds_out_whole_grains():
    groups = np.repeat(np.arange(10), 5)
    held = split_groups(groups, 0.2, seed=0)
    for g in range(10):
        assert held[groups == g].all() or not held[groups == g].any()
    assert len(np.unique(groups[held])) == 2 and len(np.unique(groups[~held])) == 8
    assert np.array_equal(held, split_groups(groups, 0.2, seed=0))


def test_labels_hold_out_a_grain_of_each_label():
    groups = np.arange(10)
    labels = np.array([0] * 5 + [1] * 5)
    held = split_groups(groups, 0.2, seed=3, labels=labels)
    assert set(labels[held]) == {0, 1} and held.sum() == 2


def test_two_or_three_grains_hold_out_patterns_and_one_grain_is_refused():
    groups = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])  # kikuchipy's real Ni map: two grains
    held = split_groups(groups, 0.2, seed=0)
    assert held[groups == 0].sum() == 1 and held[groups == 1].sum() == 1
    with pytest.raises(InputError, match="at least 2"):
        split_groups(np.zeros(5, int), 0.2, seed=0)
    with pytest.raises(InputError, match="single pure pattern"):
        split_groups(np.array([0, 0, 1]), 0.2, seed=0)


def _held_out(pure_pred, faint_pred):
    true = np.concatenate([np.full(len(pure_pred), 0.01), np.full(len(faint_pred), 0.15)])
    return true, np.concatenate([pure_pred, faint_pred])


def test_the_separating_bar_sits_between_pure_pairs_and_faint_mixtures():
    assert separating_bar(*_held_out(np.linspace(0, 0.05, 48), np.linspace(0.08, 0.2, 96))) == 0.065
    # one pure outlier does not push the bar above every faint mixture (a p99 rule would)
    pure = np.concatenate([np.linspace(0, 0.05, 47), [0.3]])
    assert separating_bar(*_held_out(pure, np.linspace(0.08, 0.2, 96))) == 0.065
    # overlapping heads: the bar that keeps most faint mixtures would pass 40% of pure pairs
    pure, faint = np.linspace(0, 0.1, 50), np.linspace(0.05, 0.2, 100)
    bar = separating_bar(*_held_out(pure, faint))
    assert (pure >= bar).mean() <= PURE_PASS and bar < 0.1
    # no faint pairs: just above the pure ones; no pure pairs: nothing to separate
    assert 0.05 < separating_bar(np.full(200, 0.01), np.linspace(0, 0.05, 200)) <= 0.07
    assert separating_bar(np.full(10, 0.3), np.full(10, 0.3)) is None


def test_adapt_lowers_the_base_models_bar_and_never_raises_it():
    base = {"claim_weight": 0.02, "claim_min_cm": 0.3}
    # the adapted head reads pure pairs above the base's bar: the bar stays (claims inside
    # grains are what keep pure pixels clean), the confidence bar is the base's
    high = _held_out(np.linspace(0, 0.05, 48), np.linspace(0.08, 0.2, 96))
    assert rule_from_held_out(*high, base) == base
    # it reads them all low and faint mixtures just above: the lower separating bar
    low = _held_out(np.linspace(0, 0.004, 48), np.linspace(0.012, 0.2, 96))
    assert rule_from_held_out(*low, base) == {"claim_weight": 0.008, "claim_min_cm": 0.3}
    assert rule_from_held_out(*low, None)["claim_weight"] == 0.008  # the fallback rule as base


def _run(*args, cwd):
    return subprocess.run([KDECONV, *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_map(tmp_path_factory):
    """A 14x14 simulated Ni map (8 grains, 60x60 px), ingested."""
    tmp = tmp_path_factory.mktemp("adapt")
    cfg = {"seed": 5, "nav_shape": [14, 14], "n_grains": 8, "detector": {"shape": [60, 60]}}
    (tmp / "sim.yaml").write_text(yaml.safe_dump(cfg))
    out = _run("simulate-map", "--config", "sim.yaml", "--out", "sim", cwd=tmp)
    assert out.returncode == 0, out.stderr
    out = _run("ingest", "sim/map.up2", "map.zarr", "--workers", "1", cwd=tmp)
    assert out.returncode == 0, out.stderr
    return tmp


@pytest.mark.slow
def test_separate_adapt_then_the_adapted_checkpoint_again(tiny_map):
    """`separate --adapt` adapts into OUT.adapt/ and separates with it; run again, it reuses that
    run for the same map and refuses it for another."""
    tmp = tiny_map
    (tmp / "adapt.yaml").write_text(yaml.safe_dump({**FAST, "top_up_noise": True}))
    out = _run("separate", "map.zarr", "--out", "sep.zarr", "--adapt", "--adapt-config", "adapt.yaml",
               "--workers", "1", cwd=tmp)
    assert out.returncode == 0, out.stderr
    assert "pure patterns:" in out.stdout and "adapt:" in out.stdout and "separate ->" in out.stdout
    assert "topped up to one recording's noise" in out.stdout
    run = tmp / "sep.zarr.adapt"
    report = json.loads((run / "adapt.json").read_text())
    from kdeconv.model.checkpoint import file_sha256
    from kdeconv.separate.model_choice import adapt_base_for, adapt_lr_for

    # the shipped base for 60 px patterns: the small-pattern model, at the step this map needs
    assert report["base"]["sha256"] == file_sha256(adapt_base_for((60, 60)))
    base_weight_error = report["held_out"]["before"]["weight_error"]
    assert report["fine_tune"]["config"]["lr"] == adapt_lr_for(adapt_base_for((60, 60)), base_weight_error)
    assert report["map"]["nav_shape"] == [14, 14] and report["map"]["pattern_shape"] == [60, 60]
    pure = report["pure"]
    assert pure["how"] == "auto" and pure["n"] == len(pure["indices"]) == len(pure["grains"]) > 0
    held = np.array(pure["held_out"])
    segments, grains = np.array(pure["grains"]), np.array(pure["crystals"])
    # segments that meet as one crystal share its id (the crystal of a segment is one of its own)
    assert all(len(set(grains[segments == s])) == 1 for s in set(segments))
    assert pure["n_grains"] == len(set(grains)) and pure["n_segments"] == len(set(segments))
    assert pure["one_crystal"]["segments"] == len(set(segments)) >= pure["one_crystal"]["crystals"]
    assert not set(grains[held]) & set(grains[~held])  # whole grains held out
    slope, offset = report["pairs"].pop("noise")  # the map's noise line, measured on its grains
    assert slope > 0 and np.isfinite(offset)
    camera = report["pairs"].pop("camera_pattern")  # a simulated camera without fixed-pattern gain
    assert camera["removed"] is False and (camera["share"] is None or camera["share"] < 0.3)
    assert report["pairs"] == {"train": 96, "val": 32, "targets": "grain_mean", "held_out_whole_grains": True,
                               "train_grains": len(set(grains[~held])),
                               "val_grains": len(set(grains[held]))}
    for when in ("before", "after"):
        assert 0 <= report["held_out"][when]["weight_error"] <= 1
        calibration = report["held_out"][when]["calibration"]["bins"]  # evaluate's table
        assert sum(row["n"] for row in calibration.values()) <= 32 and "0.1-0.2" in calibration
    assert set(report["seconds"]) >= {"find_pure", "generate", "fine_tune", "total"}
    for name in ("best.pt", "last.pt"):
        assert (run / name).stat().st_size > 0
    from kdeconv.model import load_separator

    adapted = load_separator(run / "best.pt", device="cpu")
    assert adapted.claim_rule == report["claim_rule"]
    # best.pt keeps the weights at the stop (keep: at_stop), the trainer's last ones
    import torch

    fine_tune = report["fine_tune"]
    assert fine_tune["kept"] == "at_stop" and fine_tune["kept_step"] == fine_tune["steps"]
    last = load_separator(run / "last.pt", device="cpu")
    for name, weights in adapted.model.state_dict().items():
        assert torch.equal(weights, last.model.state_dict()[name]), name
    assert adapted.meta["adapt"]["base"]["sha256"] == report["base"]["sha256"]
    import zarr

    sep = zarr.open_group(str(tmp / "sep.zarr"), mode="r")
    assert sep["A"].shape == (14, 14, 60, 60) and sep.attrs["claim_rule"] == report["claim_rule"]
    assert sep.attrs["checkpoint_sha256"] == adapted.sha256
    # run again: the finished adapt run is reused for this map, and refused for another
    import shutil

    shutil.rmtree(tmp / "sep.zarr")
    again = _run("separate", "map.zarr", "--out", "sep.zarr", "--adapt", "--workers", "1", cwd=tmp)
    assert again.returncode == 0, again.stderr
    assert f"adapt: reusing {run / 'best.pt'}".replace(str(tmp) + "/", "") in again.stdout
    assert "pure patterns:" not in again.stdout
    shutil.copytree(tmp / "map.zarr", tmp / "other_map.zarr")
    shutil.rmtree(tmp / "sep.zarr")
    other = _run("separate", "other_map.zarr", "--out", "sep.zarr", "--adapt", "--workers", "1", cwd=tmp)
    assert other.returncode == 2 and "adapted to another map" in other.stderr.strip().splitlines()[-1]
    assert "Traceback" not in other.stderr and not (tmp / "sep.zarr").exists()


@pytest.mark.slow
def test_the_api_adapts_to_patterns_in_memory_then_separates_with_the_result(tiny_map, dask_processes):
    """``kdeconv.separate(array, adapt={...})``: the patterns are written to OUT.map.zarr, adapt
    runs there, and the separation is the one the adapted checkpoint gives."""
    import zarr
    from distributed import Client

    import kdeconv

    patterns = np.asarray(zarr.open_array(str(tiny_map / "map.zarr" / "patterns"), mode="r")[...])
    out = tiny_map / "api_adapt"
    with Client(dask_processes[0], timeout="30s") as client:
        result = kdeconv.separate(patterns, adapt={**FAST, "out": str(out)}, client=client, progress=False)
    assert result.adapted is not None and result.adapted.best == out / "best.pt"
    assert (out / "adapt.json").is_file()
    stored = zarr.open_array(str(tiny_map / "api_adapt.map.zarr" / "patterns"), mode="r")
    np.testing.assert_array_equal(stored[...], patterns)
    again = kdeconv.separate(patterns, checkpoint=out / "best.pt", progress=False)
    np.testing.assert_array_equal(np.asarray(result.weights), np.asarray(again.weights))
    np.testing.assert_array_equal(result.A, again.A)
    # the cell run again: the stored patterns and the finished run are reused, not redone
    best_written = (out / "best.pt").stat().st_mtime_ns
    rerun = kdeconv.separate(patterns, adapt={**FAST, "out": str(out)}, progress=False)
    assert (out / "best.pt").stat().st_mtime_ns == best_written
    assert rerun.adapted.best == out / "best.pt" and rerun.adapted.after == result.adapted.after
    assert (rerun.adapted.n_pure, rerun.adapted.steps) == (result.adapted.n_pure, result.adapted.steps)
    np.testing.assert_array_equal(np.asarray(rerun.weights), np.asarray(result.weights))
    with pytest.raises(kdeconv.InputError, match="already exists"):  # other patterns: never mixed in
        kdeconv.separate(patterns[::-1], adapt={**FAST, "out": str(out)}, progress=False)
    with pytest.raises(kdeconv.InputError, match="takes no 'map'"):
        kdeconv.separate(patterns, adapt={"map": "x.zarr"}, progress=False)
    # pure references as an array and labels as a list: written beside the run for adapt
    corners = [(0, 0), (0, 13), (13, 0), (13, 13), (7, 7), (3, 10), (10, 3), (5, 5)]
    references = np.stack([patterns[y, x] for y, x in corners])
    labels = ["first"] * 4 + ["second"] * 4
    with Client(dask_processes[0], timeout="30s") as client:
        result = kdeconv.separate(patterns[:4], client=client, progress=False, adapt={
            **FAST, "out": str(tiny_map / "api_refs"), "references": references, "reference_labels": labels})
    report = json.loads((tiny_map / "api_refs" / "adapt.json").read_text())
    assert report["pure"]["how"] == "references" and result.adapted.n_pure == 8
    np.testing.assert_array_equal(
        zarr.open_array(str(tiny_map / "api_refs.references.zarr" / "patterns"), mode="r")[...], references)
    assert (tiny_map / "api_refs.labels.txt").read_text().split() == labels


def test_a_map_without_enough_grains_is_refused(tmp_path):
    """Exit 2 with one line, and no run folder that looks finished."""
    import zarr

    from kdeconv.io.store import store_attrs

    rng = np.random.default_rng(0)
    one_grain = np.broadcast_to(rng.random((40, 40)) * 1000, (6, 6, 40, 40)) + rng.random((6, 6, 40, 40))
    group = zarr.open_group(str(tmp_path / "map.zarr"), mode="w")
    group.attrs.update(store_attrs("map"))
    group.create_array("patterns", data=one_grain.astype(np.uint16), chunks=(6, 6, 40, 40))
    (tmp_path / "adapt.yaml").write_text(yaml.safe_dump(FAST))
    out = _run("adapt", "map.zarr", "--out", "run", "--config", "adapt.yaml", "--workers", "1",
               cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error:") and "grain" in lines[-1] and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "best.pt").exists()


@pytest.mark.slow
def test_a_cameras_fixed_pattern_leaves_the_targets_of_training_and_held_out_grains(tmp_path):
    """Through a camera with strong pixel gain and stuck pixels, every grain's mean carries the
    same fine pattern; adapt says it took it out, and different grains' targets no longer look
    alike."""
    import zarr

    cfg = {"seed": 3, "nav_shape": [16, 16], "n_grains": 12, "detector": {"shape": [60, 60]},
           "realism": {"gain": 0.3, "defect_fraction": 0.005, "bits": 8}}
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(cfg))
    out = _run("simulate-map", "--config", "sim.yaml", "--out", "sim", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = _run("ingest", "sim/map.up1", "map.zarr", "--workers", "1", cwd=tmp_path)  # 8-bit: UP1
    assert out.returncode == 0, out.stderr
    (tmp_path / "adapt.yaml").write_text(yaml.safe_dump({**FAST, "max_steps": 2}))
    out = _run("adapt", "map.zarr", "--out", "run", "--config", "adapt.yaml", "--workers", "1",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "less the camera's fine pattern" in out.stdout
    camera = json.loads((tmp_path / "run" / "adapt.json").read_text())["pairs"]["camera_pattern"]
    assert camera["removed"] is True and camera["share"] >= 0.3

    def ncc(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    for split in ("train", "val"):
        targets = np.asarray(zarr.open_array(str(tmp_path / "run" / f"targets_{split}.zarr"), mode="r"))
        grains = np.unique(targets.reshape(len(targets), -1), axis=0).reshape(-1, *targets.shape[1:])
        assert len(grains) >= 2 and abs(ncc(grains[0], grains[1])) < 0.3


def test_references_of_one_grain_are_grouped_so_no_pair_mixes_a_grain_with_itself():
    import kikuchipy as kp

    from kdeconv.adapt.pure import pattern_features
    from kdeconv.adapt.references import group_references
    from kdeconv.preprocess.background import static_background_from_mean

    raw = kp.data.nickel_ebsd_small().data.reshape(9, 60, 60).astype(np.float32)
    recipe = {"mode": "raw", "static": "map_mean", "static_operation": "subtract", "dynamic": True,
              "dynamic_operation": "subtract", "dynamic_std": None}
    groups = group_references(pattern_features(raw, recipe, static_background_from_mean(raw.mean(0), "auto")))
    first_column = groups[[0, 3, 6]]
    assert len(set(first_column)) == 1 and len(set(groups)) == 2  # the two real grains
    rng = np.random.default_rng(0)
    distinct = rng.standard_normal((6, 64))
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    assert len(set(group_references(distinct))) == 6


def test_references_at_another_level_than_the_map_are_refused():
    """The map's static background is subtracted from the references: an 8-bit export of a
    16-bit map's patterns would train on the background's shape."""
    import kikuchipy as kp

    from kdeconv.adapt.references import LEVEL_RATIO_MAX, check_reference_level
    from kdeconv.preprocess.background import static_background_from_mean

    raw = kp.data.nickel_ebsd_small().data.reshape(9, 60, 60).astype(np.float32)
    static = static_background_from_mean(raw.mean(0), "auto")
    check_reference_level(raw[:5], static, np.uint8)  # the map's own patterns
    check_reference_level(raw[:5] * 1.3, static, np.uint8)  # another exposure, within the bar
    eight_bit = r"reference patterns \(float32, mean level .*\) are 2\d\dx the map's \(uint8"
    with pytest.raises(InputError, match=eight_bit):
        check_reference_level(raw[:5] * 256, static, np.uint8)
    with pytest.raises(InputError, match="same bit depth, exposure and export"):
        check_reference_level(raw[:5] / LEVEL_RATIO_MAX / 1.1, static, np.uint16)
    # a circular-masked map: the level is read inside the mask
    from kdeconv.preprocess.mask import circular_mask

    mask = circular_mask((60, 60))
    check_reference_level(raw[:5] * mask, static * mask, np.uint8)
    # a round screen smaller than the pattern: both in its square (as adapt compares them)
    from kdeconv.preprocess.mask import window_patterns

    screen = {"mask": "circle", "screen": [8, 6, 44]}
    static = static_background_from_mean(raw.mean(0), "auto", background=screen)
    assert static.shape == (44, 44)
    check_reference_level(window_patterns(raw[:5], screen), static, np.uint8)
    with pytest.raises(InputError, match="same bit depth"):
        check_reference_level(window_patterns(raw[:5] * 4, screen), static, np.uint8)


def test_references_that_read_otherwise_than_the_map_are_named_in_a_warning():
    import kikuchipy as kp

    from kdeconv.adapt.references import reference_look_warning
    from kdeconv.config.simulate_map import ProcessedSpec
    from kdeconv.evaluate.simulate_map import vendor_processed

    raw = kp.data.nickel_ebsd_small().data.reshape(9, 60, 60)
    processed = vendor_processed(raw, raw.astype(np.float32).mean(0), ProcessedSpec())
    recipe = {"mask": "none"}
    assert reference_look_warning(raw[:5], recipe, "raw") is None
    assert reference_look_warning(processed[:5], recipe, "processed") is None
    line = reference_look_warning(processed[:5], recipe, "raw")
    assert line.startswith("Warning: the reference patterns read background-corrected (low-frequency share")
    assert "but the map raw (detector background present)" in line
    assert "read raw" in reference_look_warning(raw[:5], recipe, "processed")


@pytest.mark.slow
def test_an_interrupted_adapt_resumes_to_the_uninterrupted_result(tiny_map, dask_processes, monkeypatch):
    """Ctrl-C after the first checkpoint keeps the run folder unfinished (no best.pt); the same
    settings resume it (pure patterns, pairs and training kept) to the weights of a straight run;
    other settings start over; a finished run is refused."""
    import torch
    from distributed import Client

    from kdeconv.adapt import run
    from kdeconv.train.driver import Trainer

    settings = {**FAST, "map": str(tiny_map / "map.zarr"), "seed": 2}
    checkpoint = Trainer.evaluate_and_checkpoint

    def interrupted_after_step_2(self, lr, log):
        result = checkpoint(self, lr, log)
        if self.state["step"] == 2:
            raise KeyboardInterrupt
        return result

    with Client(dask_processes[0], timeout="30s") as client:
        straight = run({**settings, "out": str(tiny_map / "straight")}, client=client, progress=False,
                       echo=lambda *_: None)
        folder = tiny_map / "resumed"
        with monkeypatch.context() as patched:
            patched.setattr(Trainer, "evaluate_and_checkpoint", interrupted_after_step_2)
            with pytest.raises(KeyboardInterrupt):
                run({**settings, "out": str(folder)}, client=client, progress=False, echo=lambda *_: None)
        assert not (folder / "best.pt").exists() and not (folder / "adapt.json").exists()
        for kept in ("resume_key.json", "pure.json", "pairs_train.zarr", "pairs_val.zarr", "train/last.pt"):
            assert (folder / kept).exists(), kept
        lines = []
        resumed = run({**settings, "out": str(folder), "minutes": 5}, client=client, progress=False,
                      echo=lines.append)  # a budget key may change
        assert f"adapt: resuming the interrupted run in {folder}" in lines
        assert any("as chosen before the interruption" in line for line in lines)
        report = json.loads(resumed.report.read_text())
        assert report["fine_tune"]["resumed_from_step"] == 2 and report["fine_tune"]["steps"] == 4
        assert report["pure"]["indices"] == json.loads(straight.report.read_text())["pure"]["indices"]
        assert not (folder / "resume_key.json").exists()
        got, want = (torch.load(r.best, map_location="cpu", weights_only=False)["state_dict"]
                     for r in (resumed, straight))
        for name, tensor in want.items():
            torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)

        with pytest.raises(InputError, match="run folder already exists"):
            run({**settings, "out": str(folder)}, client=client, progress=False, echo=lambda *_: None)
        # an unfinished run of other settings is cleared, not mixed in
        with monkeypatch.context() as patched:
            patched.setattr(Trainer, "evaluate_and_checkpoint", interrupted_after_step_2)
            with pytest.raises(KeyboardInterrupt):
                run({**settings, "out": str(tiny_map / "other")}, client=client, progress=False,
                    echo=lambda *_: None)
        lines = []
        run({**settings, "out": str(tiny_map / "other"), "seed": 3}, client=client, progress=False,
            echo=lines.append)
        assert ("other: an interrupted adapt with other settings (map, base or options); "
                "starting over") in lines
    # a folder that is no adapt run is never cleared
    foreign = tiny_map / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="run folder already exists"):
        run({**settings, "out": str(foreign)}, progress=False, echo=lambda *_: None)
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="process groups as on Linux")
def test_ctrl_c_in_adapt_is_one_line_and_the_same_command_resumes(tiny_map, ctrl_c):
    import os

    (tiny_map / "slow.yaml").write_text(yaml.safe_dump({**FAST, "max_steps": 400}))
    command = [KDECONV, "adapt", "map.zarr", "--out", "ctrl_c", "--config", "slow.yaml", "--workers", "1"]
    proc = subprocess.Popen(command, cwd=tiny_map, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, process_group=0, env=dict(os.environ, KDECONV_PROGRESS="0"))
    last = tiny_map / "ctrl_c" / "train" / "last.pt"
    stdout, stderr = ctrl_c(proc, last.exists)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "Interrupted: rerun the same command to resume where possible."
    assert "Traceback" not in stdout + stderr
    assert last.exists() and not (tiny_map / "ctrl_c" / "best.pt").exists()
    rerun = _run(*command[1:5], "--config", "slow.yaml", "--max-steps", "8", "--workers", "1", cwd=tiny_map)
    assert rerun.returncode == 0, rerun.stderr
    assert f"adapt: resuming the interrupted run in {tiny_map / 'ctrl_c'}" in rerun.stdout
    assert (tiny_map / "ctrl_c" / "best.pt").is_file()
