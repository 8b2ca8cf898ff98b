"""workflows/refit_weight_head.py: its calibration maps are valid, seeded and never the held-out
phase, and the features it fits on are what `separate` feeds the shipped model's weight head."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflows"))
import refit_weight_head  # noqa: E402

from kdeconv.config import validate_config  # noqa: E402
from kdeconv.config.simulate_map import SimulateMapConfig  # noqa: E402


def test_calibration_maps_are_seeded_valid_and_leave_the_held_out_phase_out():
    configs = [refit_weight_head.map_config(seed) for seed in range(2000, 2060)]
    assert refit_weight_head.map_config(2000) == configs[0]  # the seed alone decides a map
    phases = set()
    for config in configs:
        checked = validate_config(SimulateMapConfig, config, "calibration map")
        assert checked.detector.shape[0] in refit_weight_head.SIZES
        phases |= {config["phase"]} if "phase" in config else {p["master"]["phase"] for p in config["phases"]}
    assert "zr" not in phases and len(phases) >= 10
    assert {c["style"] for c in configs} == {"raw", "processed"}
    assert any("phases" in c for c in configs)  # phase boundaries too


@pytest.mark.parametrize("style", ["raw", "processed"])
def test_features_are_what_separate_feeds_the_weight_head(tmp_path, style):
    from kdeconv import separate
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import TRUTH_NAME, simulate_map
    from kdeconv.io.store import open_store
    from kdeconv.model.checkpoint import DEFAULT_CHECKPOINT, model_from_checkpoint, read_checkpoint
    from kdeconv.train.weight_head import pooled_features

    config = refit_weight_head.map_config(2003)
    config.update(nav_shape=[6, 6], n_grains=3, style=style)
    config["detector"]["shape"] = [60, 60]  # resampled to the working size, as separate does
    simulate_map(validate_config(SimulateMapConfig, config, "map"), tmp_path / "sim", echo=lambda *_: None)
    truth = open_store(tmp_path / "sim" / TRUTH_NAME, "truth")
    patterns = np.asarray(truth["C"][...])
    src = zarr.create_array(str(tmp_path / "patterns.zarr"), shape=patterns.shape, dtype=patterns.dtype,
                            chunks=(3, 6) + patterns.shape[-2:])
    src[...] = patterns

    ckpt = read_checkpoint(DEFAULT_CHECKPOINT)
    inputs, kept = refit_weight_head.model_inputs(src, ckpt)
    assert inputs.shape == (36, 120, 120) and kept.all()
    _, w_a = pooled_features(model_from_checkpoint(ckpt).eval(), inputs)

    result = separate(patterns, model="default", device="cpu", precision="fp32", in_grain_claims=False,
                      progress=False)
    dominant = np.asarray(result.weights).reshape(-1, 2)[:, 0]
    torch.testing.assert_close(np.maximum(w_a, 1 - w_a), dominant, atol=2e-4, rtol=0)
