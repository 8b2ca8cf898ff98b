"""What a camera leaves of B: the noise-free recording and the oracle residual of simulated maps."""

import sys
from pathlib import Path

import numpy as np
import pytest

from kdeconv.config.simulate_map import RealismSpec
from kdeconv.evaluate.simulate_map import camera_effects, expected_recording, record_counts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflows"))
import check_camera_cap  # noqa: E402


@pytest.mark.parametrize("bits", [16, 8])
def test_the_expected_recording_is_the_mean_of_the_recordings(bits):
    r = RealismSpec(dose=1500.0, gain=0.1, bits=bits, blur_sigma=0.5)
    rng = np.random.default_rng(0)
    pattern = rng.random((1, 24, 24)).astype(np.float32)
    draws = 400
    gain = camera_effects(7, r, (24, 24))
    recorded = record_counts(np.repeat(pattern, draws, axis=0), r, 7, np.arange(draws), gain)
    expected = expected_recording(pattern, r, gain)[0]
    # each pixel's mean of 400 Poisson draws (plus read noise and rounding) within 5 standard errors
    scale = 255.0 / (1.2 * r.dose * 1.0) if bits == 8 else 1.0
    sem = np.sqrt(expected / scale + r.read_noise**2) * scale / np.sqrt(draws)
    assert np.all(np.abs(recorded.mean(axis=0) - expected) < 5 * sem + 0.5 / np.sqrt(draws) + 1e-9)


def _map(tmp_path, name, realism):
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import simulate_map

    cfg = SimulateMapConfig(seed=3, nav_shape=(8, 8), n_grains=4, realism=realism,
                            footprint={"shape": "gaussian", "radius": 2.0, "supersample": 4})
    return simulate_map(cfg, tmp_path / name) / "truth.zarr"


def test_the_cap_follows_the_camera(tmp_path, warm_indexer):
    good = check_camera_cap.camera_cap(_map(tmp_path, "good", {}), minority_from=0.25)
    assert good["n"] > 0
    assert good["clean_b"] == 1.0   # the frame: noise-free B indexes to its grain
    assert good["oracle_b"] >= 0.9  # the default camera leaves B indexable
    # bands at a fifteenth of the signal on 400 counts, 8 bits: B drowns in C's noise
    bad = check_camera_cap.camera_cap(_map(tmp_path, "bad", {"dose": 400.0, "signal_fraction": 0.15,
                                                             "bits": 8, "gain": 0.15}), minority_from=0.25)
    assert bad["clean_b"] == 1.0
    assert bad["oracle_b"] <= 0.2
    assert all(b["band_to_noise"] < g["band_to_noise"]
               for b, g in zip(bad["bins"].values(), good["bins"].values()))


def test_a_processed_map_is_refused(tmp_path):
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import simulate_map

    cfg = SimulateMapConfig(seed=3, nav_shape=(4, 4), n_grains=2, style="processed")
    truth = simulate_map(cfg, tmp_path / "p") / "truth.zarr"
    with pytest.raises(SystemExit, match="needs a raw map"):
        check_camera_cap.camera_cap(truth)
