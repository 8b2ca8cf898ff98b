"""simulate-map with several phases, camera effects and the processed style; evaluate against them."""

import json

import numpy as np
import pytest
import zarr

DUPLEX = [{"master": {"kind": "library", "phase": "fe_alpha"}, "fraction": 0.5},
          {"master": {"kind": "library", "phase": "fe_gamma"}, "fraction": 0.5}]


def _config(**changes):
    from kdeconv.config.simulate_map import SimulateMapConfig

    base = dict(seed=2, nav_shape=(8, 8), n_grains=4, phases=DUPLEX,
                footprint={"shape": "gaussian", "radius": 2.0, "supersample": 4},
                detector={"shape": (60, 60), "pc": (0.5, 0.45, 0.55)})
    return SimulateMapConfig(**(base | changes))


@pytest.fixture(scope="module")
def duplex_maps(tmp_path_factory):
    """A raw and a processed 8x8 duplex map (fe_alpha + fe_gamma) of one seed -> their folders."""
    from kdeconv.evaluate.simulate_map import simulate_map

    root = tmp_path_factory.mktemp("duplex")
    return {style: simulate_map(_config(style=style), root / style) for style in ("raw", "processed")}


def _truth(folder):
    return zarr.open_group(str(folder / "truth.zarr"), mode="r")


def test_duplex_truth_has_both_phases_in_the_asked_fractions(duplex_maps, tmp_path):
    t = _truth(duplex_maps["raw"])
    phases = t.attrs["phases"]
    assert [p["name"] for p in phases] == ["fe_alpha", "fe_gamma"]
    assert [p["space_group"] for p in phases] == [229, 225] and {p["point_group"] for p in phases} == {"m-3m"}
    assert [p["n_grains"] for p in phases] == [2, 2] and phases[0]["master"]["kind"] == "library"
    grain_phase = np.asarray(t.attrs["grains"]["phase"])
    ga, gb, pa, pb = (t[k][...] for k in ("grain_a", "grain_b", "phase_a", "phase_b"))
    assert (pa == grain_phase[ga]).all()
    assert (pb[gb >= 0] == grain_phase[gb[gb >= 0]]).all() and (pb[gb < 0] == -1).all()
    assert ((pa != pb) & (pb >= 0)).any(), "the map should hold phase boundaries"

    # Every grain's clean pattern is its orientation simulated in its own phase.
    from kdeconv.config.detector import DetectorSpec
    from kdeconv.evaluate.metrics import ncc
    from kdeconv.evaluate.reference import reference_phases, simulate_at

    refs = reference_phases(phases)
    det = DetectorSpec.from_attrs(t.attrs["detector"]).to_kikuchipy()
    rot = t["rotation_a"][...].reshape(-1, 4)
    sim = simulate_at(rot, det, refs, phase_id=pa.reshape(-1))
    assert ncc(sim, t["A"][...].reshape(-1, 60, 60)).min() > 0.999
    other = simulate_at(rot, det, refs, phase_id=1 - pa.reshape(-1))
    assert ncc(other, t["A"][...].reshape(-1, 60, 60)).max() < 0.9

    # Fractions other than a half: 3 of 4 grains ferrite.
    from kdeconv.evaluate.simulate_map import simulate_map

    phases = [dict(DUPLEX[0], fraction=3.0), dict(DUPLEX[1], fraction=1.0)]
    t = _truth(simulate_map(_config(phases=phases, nav_shape=(4, 4)), tmp_path / "mostly_ferrite"))
    assert [p["n_grains"] for p in t.attrs["phases"]] == [3, 1]
    assert [p["fraction"] for p in t.attrs["phases"]] == [0.75, 0.25]


def test_processed_style_is_masked_8bit_without_detector_background(duplex_maps):
    import kikuchipy as kp

    from kdeconv.preprocess.background import decide_background
    from kdeconv.preprocess.mask import circular_mask, detect_masked

    raw, processed = _truth(duplex_maps["raw"]), _truth(duplex_maps["processed"])
    assert processed.attrs["style"] == "processed" and processed.attrs["map_file"] == "map.up1"
    C = processed["C"][...]
    assert C.dtype == np.uint8 and C.shape == (8, 8, 60, 60) and C.max() == 255
    stack = C.reshape(-1, 60, 60)
    assert detect_masked(stack, circular_mask((60, 60))).all()
    assert decide_background(stack)[0] == "processed"
    assert decide_background(raw["C"][...].reshape(-1, 60, 60))[0] == "raw"
    assert raw.attrs["map_file"] == "map.up2" and raw["C"].dtype == np.uint16
    # The file is what a user would load.
    assert np.array_equal(kp.load(duplex_maps["processed"] / "map.up1").data, C)
    # Same seed: same grains and truth, whatever the style.
    for name in ("A", "B", "weights", "phase_a", "grain_b"):
        assert np.array_equal(raw[name][...], processed[name][...])


def test_gain_and_stuck_pixels_are_the_same_on_every_pattern(tmp_path):
    from kdeconv.evaluate.simulate_map import camera_effects, simulate_map

    one_grain = dict(phases=None, phase="ni", n_grains=1, nav_shape=(3, 4))  # every pattern: the same grain
    plain = _truth(simulate_map(_config(**one_grain), tmp_path / "plain"))["C"][...].astype(float)
    realism = {"gain": 0.2}
    cfg = _config(**one_grain, realism=realism)
    gained = _truth(simulate_map(cfg, tmp_path / "gain"))["C"][...].astype(float)
    gain_map = camera_effects(cfg.seed, cfg.realism, (60, 60))
    bright = plain > 200  # rounding to whole counts is < 0.5 %
    ratio = gained / np.maximum(plain, 1)
    assert np.allclose(ratio[bright], np.broadcast_to(gain_map, plain.shape)[bright], rtol=5e-3)

    defects = _truth(simulate_map(_config(**one_grain, realism={"defect_fraction": 0.01}),
                                  tmp_path / "defects"))
    C = defects["C"][...].reshape(12, -1)
    dead = C == 0
    hot = C == C.max(axis=1, keepdims=True)
    assert (dead == dead[0]).all() and (hot == hot[0]).all()
    assert dead[0].sum() + hot[0].sum() == round(0.01 * 3600)

    eight = _truth(simulate_map(_config(**one_grain, realism={"bits": 8}), tmp_path / "eight"))
    assert eight.attrs["map_file"] == "map.up1" and eight["C"].dtype == np.uint8
    assert (tmp_path / "eight" / "map.up1").is_file()


def test_a_round_screen_darkens_the_corners_and_separate_masks_them(tmp_path):
    from kdeconv.evaluate.simulate_map import simulate_map
    from kdeconv.preprocess import circular_mask
    from kdeconv.preprocess.background import decide_mask

    cfg = _config(phases=None, phase="ni", realism={"screen_radius": 1.15, "screen_floor": 0.03},
                  detector={"shape": (60, 80), "pc": (0.5, 0.45, 0.55)})
    C = _truth(simulate_map(cfg, tmp_path / "screen"))["C"][...].reshape(-1, 60, 80).astype(float)
    mean = C.mean(axis=0)
    centre = mean[25:35, 35:45].mean()
    assert mean[0, 0] < 0.05 * centre and mean[:, 0].max() < 0.05 * centre  # beyond 1.15 x 30 px
    assert mean[30, 40 - 33] > 0.3 * centre                                  # inside it
    assert (mean[~circular_mask((60, 80))] > 0).all()                         # dark, not zero
    assert decide_mask(C)[0] == "circle"


def test_simulate_map_cli_phase_shape_and_style(cli, tmp_path):
    out = tmp_path / "fe"
    result = cli("simulate-map", "--out", out, "--phase", "fe_alpha", "--nav-shape", 3, 4, "--n-grains", 2,
                 "--pattern-shape", 40, 56, "--style", "processed", "--energy", 15)
    assert result.exit_code == 0, result.output
    t = _truth(out)
    assert t["C"].shape == (3, 4, 40, 56) and t.attrs["phases"][0]["name"] == "fe_alpha"
    assert t.attrs["phases"][0]["energy"] == 15.0
    bad = cli("simulate-map", "--out", tmp_path / "x", "--phase", "unobtainium", "--nav-shape", 2, 2)
    assert bad.exit_code == 2 and "unobtainium" in bad.output and not (tmp_path / "x").exists()


def test_config_refuses_phase_and_phases_together():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        _config(phase="ni")
    with pytest.raises(ValidationError, match="repeat"):
        _config(phases=[DUPLEX[0], DUPLEX[0]])


def test_phase_claims_match_only_in_their_phase():
    from orix.quaternion.symmetry import Oh

    from kdeconv.evaluate.recovery import PHASE_MISMATCH_DEG, phase_claim_angles, recovery_table

    q = np.array([[1.0, 0, 0, 0], [0.9238795, 0, 0, 0.3826834], [1.0, 0, 0, 0]])
    other = np.array([[0.9238795, 0.3826834, 0, 0]] * 3)
    nan = np.full((3, 4), np.nan)
    w = np.array([[0.7, 0.3], [0.6, 0.4], [1.0, 0.0]])
    truth_pa, truth_pb = np.array([0, 0, 1]), np.array([1, 0, -1])
    truth_b = np.where((truth_pb >= 0)[:, None], other, nan)
    claimed = np.array([True, True, False])
    right = phase_claim_angles(q, other, truth_pa, truth_pb, q, truth_b, truth_pa, truth_pb, [Oh, Oh])
    row = recovery_table(right, w, claimed)["tolerances_deg"]["3"]
    assert row["mixed_both"] == 1.0 and row["pure_ok"] == 1.0
    # The same orientations, indexed as the other phase: misses; the pure one is also invented.
    swapped = phase_claim_angles(q, other, 1 - truth_pa, 1 - truth_pa, q, truth_b, truth_pa, truth_pb,
                                 [Oh, Oh])
    assert swapped["first_a"][0] == PHASE_MISMATCH_DEG and np.isnan(swapped["second_b"][2])
    row = recovery_table(swapped, w, claimed)["tolerances_deg"]["3"]
    assert row["mixed_both"] == 0.0 and row["pure_kept"] == 0.0 and row["pure_invented"] == 1.0


def test_weight_calibration_on_known_weights():
    from kdeconv.evaluate.metrics import weight_calibration
    from kdeconv.evaluate.recovery import WEIGHT_BINS

    true_min = np.array([0.0, 0.0, 0.12, 0.18, 0.25, 0.35, 0.45, 0.5])
    pred_min = np.array([0.01, 0.03, 0.10, 0.14, 0.27, 0.35, 0.40, 0.49])
    true = np.stack([1 - true_min, true_min], 1)
    pred = np.stack([pred_min, 1 - pred_min], 1)  # column order does not matter
    cal = weight_calibration(true, pred, WEIGHT_BINS)
    b = cal["bins"]
    assert b["pure"] == {"n": 2, "true_median": 0.0, "pred_median": pytest.approx(0.02),
                         "error": pytest.approx(0.02)}
    assert b["0.1-0.2"]["n"] == 2 and b["0.1-0.2"]["pred_median"] == pytest.approx(0.12)
    assert b["0.1-0.2"]["error"] == pytest.approx(-0.03)
    assert b["0.3-0.4"]["error"] == pytest.approx(0.0)
    assert b["0.4-0.5"]["n"] == 2 and b["0.4-0.5"]["true_median"] == pytest.approx(0.475)  # 0.5 is in
    assert b["0.4-0.5"]["pred_median"] == pytest.approx(0.445)
    assert cal["max_abs_error"] == pytest.approx(0.03) and cal["calibrated"] is True
    empty = weight_calibration(true[:2], pred[:2], WEIGHT_BINS)
    assert empty["bins"]["0.2-0.3"]["n"] == 0 and empty["max_abs_error"] is None


def test_reflector_families_of_common_structures():
    from kdeconv.evaluate.indexing import reflector_families
    from kdeconv.simulate import load_master

    def families(name):
        spec = {"kind": "nickel"} if name == "ni" else {"kind": "library", "phase": name}
        return {tuple(sorted(np.abs(h))) for h in reflector_families(load_master(spec).phase)}

    assert families("ni") == {(1, 1, 1), (0, 0, 2), (0, 2, 2), (1, 1, 3)}
    assert families("fe_alpha") == {(0, 1, 1), (0, 0, 2), (1, 1, 2), (0, 1, 3)}
    ti = load_master({"kind": "library", "phase": "ti_alpha"}).phase
    hcp = {tuple(np.abs(h)) for h in reflector_families(ti)}
    assert len(hcp) == 8 and (0, 0, 2) in hcp and (0, 0, 1) not in hcp  # 0001 is extinct, 0002 is not


@pytest.mark.slow
def test_evaluate_two_phase_map_perfect_and_swapped_phase(cli, duplex_maps, tmp_path, write_separated,
                                                          warm_indexer):
    """Perfect separation scores 1.0 on a duplex map; B of every phase boundary simulated at its
    true orientation but in the other phase indexes as that phase and is a miss."""
    from kdeconv.config.detector import DetectorSpec
    from kdeconv.evaluate.metrics import minmax01
    from kdeconv.evaluate.reference import reference_phases, simulate_at

    for style in ("raw", "processed"):
        folder = duplex_maps[style]
        t = _truth(folder)
        A, B, w = t["A"][...], t["B"][...], t["weights"][...]
        sep = write_separated(tmp_path / f"perfect_{style}.zarr", A, B, w)
        result = cli("evaluate", sep, "--truth", folder / "truth.zarr", "--out", tmp_path / f"r_{style}")
        assert result.exit_code == 0, result.output
        m = json.loads((tmp_path / f"r_{style}" / "metrics.json").read_text())
        assert [p["name"] for p in m["phases"]] == ["fe_alpha", "fe_gamma"]
        assert m["baseline_background"]["mode"] == style and m["scored_inside_mask"] == (style == "processed")
        for method in ("kdeconv", "truth"):
            rec = m["recovery"][method]
            row = rec["tolerances_deg"]["3"]
            assert row["mixed_both"] == 1.0 and row["pure_ok"] == 1.0, (style, method)
            assert rec["boundaries"]["phase_boundary"]["tolerances_deg"]["3"]["mixed_both"] == 1.0
            assert set(rec["phases"]) == {"fe_alpha", "fe_gamma"}
        assert m["weight_calibration"]["max_abs_error"] == 0.0
        assert "By phase" in (tmp_path / f"r_{style}" / "report.md").read_text()

    t = _truth(duplex_maps["raw"])
    A, B, w = t["A"][...], t["B"][...], t["weights"][...]
    pa, pb = t["phase_a"][...], t["phase_b"][...]
    cross = (pb >= 0) & (pa != pb)
    refs = reference_phases(t.attrs["phases"])
    detector = DetectorSpec.from_attrs(t.attrs["detector"]).to_kikuchipy()
    wrong = simulate_at(t["rotation_b"][...][cross], detector, refs, phase_id=1 - pb[cross])
    B_wrong = B.copy()
    B_wrong[cross] = np.rint(minmax01(wrong) * 65535).astype(np.uint16)
    sep = write_separated(tmp_path / "wrong.zarr", A, B_wrong, w)
    result = cli("evaluate", sep, "--truth", duplex_maps["raw"] / "truth.zarr", "--out", tmp_path / "rw",
                 "--no-baselines")
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "rw" / "metrics.json").read_text())["recovery"]["kdeconv"]
    assert rec["boundaries"]["phase_boundary"]["tolerances_deg"]["3"]["mixed_both"] == 0.0
    assert rec["boundaries"]["same_phase"]["tolerances_deg"]["3"]["mixed_both"] == 1.0
    assert rec["tolerances_deg"]["3"]["pure_ok"] == 1.0


def test_a_small_off_centre_screen_is_found_where_simulate_map_put_it(tmp_path):
    from kdeconv.config.evaluate import EvaluateConfig
    from kdeconv.evaluate.driver import _mask
    from kdeconv.evaluate.simulate_map import simulate_map
    from kdeconv.preprocess import circular_mask
    from kdeconv.preprocess.background import decide_mask

    cfg = _config(phases=None, phase="ni", detector={"shape": (60, 80), "pc": (0.5, 0.45, 0.55)},
                  realism={"screen_radius": 0.8, "screen_floor": 0.0, "screen_offset": (0.1, -0.2)})
    C = _truth(simulate_map(cfg, tmp_path / "screen"))["C"][...].reshape(-1, 60, 80).astype(float)
    mode, evidence = decide_mask(C)
    top, left, side = evidence["screen"]
    # radius 24 px, centre (29.5 + 3, 39.5 - 6): the square around it, less its soft last pixel
    assert mode == "circle" and 44 <= side <= 48
    assert abs(top + (side - 1) / 2 - 32.5) <= 1 and abs(left + (side - 1) / 2 - 33.5) <= 1
    # evaluate scores inside the screen's circle where separate cut to it
    recipe = {"mask": "circle", "screen": evidence["screen"]}
    scored = _mask((60, 80), EvaluateConfig(), None, recipe)
    np.testing.assert_array_equal(scored[top: top + side, left: left + side], circular_mask((side, side)))
    assert scored.sum() == circular_mask((side, side)).sum()
    assert _mask((60, 80), EvaluateConfig(), None, {"mask": "circle"}).sum() == circular_mask((60, 80)).sum()
