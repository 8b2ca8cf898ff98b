"""Simulated pairs keep their orientations: Hough-index pure A patterns and compare."""

import numpy as np
import pytest
import yaml
import zarr


@pytest.mark.slow
def test_pure_simulated_a_indexes_to_stored_rotation(tmp_path, cli):
    import kikuchipy as kp
    from orix.crystal_map import PhaseList
    from orix.quaternion import Orientation

    from kdeconv.config.detector import DetectorSpec
    from kdeconv.simulate import nickel_master

    cfg = {"seed": 4, "n": 4, "chunk_size": 2, "pipeline": "mix_then_normalize",
           "source": {"kind": "simulate", "n_pure": 8, "shape": [120, 120],
                      "pc_x": [0.45, 0.55], "pc_y": [0.4, 0.55], "pc_z": [0.5, 0.65],
                      "sample_tilt": [68, 72], "camera_tilt": [-4, 4]},
           # wA = 1 exactly: A is the pure pattern; no realism, no flips, no mask.
           "weights": {"pure_fraction": 1.0, "pure_low": 1.0}, "mask": {"fraction": 0.0}}
    path = tmp_path / "orient.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "pairs.zarr"
    res = cli("generate", "--config", path, "--out", out, "--workers", 1)
    assert res.exit_code == 0, res.output
    g = zarr.open_group(str(out), mode="r")
    phase = nickel_master().phase
    phase_list = PhaseList(phase)
    errors = []
    for k in range(4):
        j = int(g["index_a"][k])
        pc, tilt = g["pure_pc"][j], g["pure_tilt"][j]
        det = DetectorSpec(shape=(120, 120), pc=pc, tilt=tilt[0], sample_tilt=tilt[1]).to_kikuchipy()
        s = kp.signals.EBSD(g["A"][k].astype(np.float32).reshape(1, 1, 120, 120))
        s.detector = det
        xmap = s.hough_indexing(phase_list=phase_list, indexer=det.get_indexer(phase_list), verbose=0)
        found = Orientation(xmap.rotations.data.reshape(-1, 4), symmetry=phase.point_group)
        stored = Orientation(g["rotation_a"][k].reshape(1, 4).astype(np.float64),
                             symmetry=phase.point_group)
        assert np.array_equal(g["rotation_a"][k], g["pure_rotation"][j])
        errors.append(np.rad2deg(found.angle_with(stored)[0]))
    print("misorientation (deg):", np.round(errors, 3))
    assert max(errors) < 2.0, errors
