"""DetectorSpec: one detector for store attrs, configs and kikuchipy's EBSDDetector."""

import numpy as np
import pytest

from kdeconv.config.detector import DetectorSpec
from kdeconv.errors import InputError


def test_round_trip_through_kikuchipy_and_attrs():
    spec = DetectorSpec(shape=(60, 80), pc=(0.42, 0.21, 0.5), sample_tilt=69.5, tilt=2.0, binning=4,
                        px_size=70.0)
    detector = spec.to_kikuchipy()
    assert detector.shape == (60, 80) and detector.binning == 4 and detector.tilt == 2.0
    np.testing.assert_allclose(detector.pc.reshape(-1), [0.42, 0.21, 0.5])
    again = DetectorSpec.from_kikuchipy(detector)
    assert again == spec
    assert DetectorSpec.from_attrs(again.to_attrs()) == spec


def test_per_pattern_projection_centres():
    pcs = np.random.default_rng(0).uniform(0.4, 0.6, (2, 3, 3))
    spec = DetectorSpec(shape=(16, 16), pc=pcs)
    assert spec.per_pattern and np.asarray(spec.to_attrs()["pc"]).shape == (2, 3, 3)
    assert spec.to_kikuchipy((2, 3)).pc.shape == (2, 3, 3)
    np.testing.assert_allclose(spec.single().pc, pcs.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(spec.to_kikuchipy((5,)).pc.reshape(-1, 3)[0], pcs.reshape(-1, 3).mean(axis=0))
    shared = DetectorSpec(shape=(16, 16), pc=[[0.5, 0.4, 0.6]] * 6).to_kikuchipy((6,))
    same = DetectorSpec.from_kikuchipy(shared)
    assert same.pc == (0.5, 0.4, 0.6)  # one PC when every pattern shares it
    big = DetectorSpec.from_kikuchipy(spec.to_kikuchipy((2, 3)), max_pcs=4)
    assert not big.per_pattern and "mean" in big.pc_note


def test_damaged_attrs_are_one_line_errors():
    with pytest.raises(InputError, match="pc"):
        DetectorSpec.from_attrs({"shape": [8, 8], "pc": [0.5, 0.5]})
    with pytest.raises(InputError, match="shape"):
        DetectorSpec.from_attrs({"pc": [0.5, 0.5, 0.5]})


def test_config_sections_keep_their_yaml_keys():
    from kdeconv.config.evaluate import EvaluateConfig
    from kdeconv.config.simulate_map import SimulateMapConfig

    cfg = SimulateMapConfig.model_validate({"detector": {"pc": [0.5, 0.45, 0.55], "sample_tilt": 70.0}})
    assert cfg.detector.shape == (60, 60) and cfg.detector.pc == (0.5, 0.45, 0.55)
    with pytest.raises(ValueError, match="too small to index"):
        SimulateMapConfig.model_validate({"detector": {"shape": [8, 8]}})
    cfg = EvaluateConfig.model_validate({"detector": {"shape": [60, 60], "pc": [0.5, 0.5, 0.5],
                                                      "binning": 2}})
    assert cfg.detector.binning == 2
