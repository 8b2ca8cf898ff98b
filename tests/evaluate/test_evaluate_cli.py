import json

import numpy as np
import pytest
import zarr


def _pairs_store(path, truth):
    """The tiny map as a 'pairs' store, with generate's config for a fixed simulated detector."""
    from kdeconv.io.store import store_attrs

    group = zarr.open_group(str(path), mode="w")
    for name in ("C", "A", "B"):
        group.create_array(name, data=truth[name][...].reshape(-1, *truth[name].shape[2:]))
    for name in ("weights", "rotation_a", "rotation_b"):
        group.create_array(name, data=truth[name][...].reshape(-1, truth[name].shape[-1]))
    det = truth.attrs["detector"]
    source = {"kind": "simulate", "master": {"kind": "nickel"}, "shape": det["shape"],
              "pc_x": [det["pc"][0]] * 2, "pc_y": [det["pc"][1]] * 2, "pc_z": [det["pc"][2]] * 2,
              "sample_tilt": [70.0, 70.0], "camera_tilt": [0.0, 0.0]}
    group.attrs.update(store_attrs("pairs", {"source": source, "preprocess": {"binning": 1}}))
    return path


def _truth(tiny_map):
    return zarr.open_group(str(tiny_map / "truth.zarr"), mode="r")


def test_mismatched_shapes_exit_2(cli, tiny_map, tmp_path, write_separated):
    t = _truth(tiny_map)
    sep = write_separated(tmp_path / "sep.zarr", t["A"][:, :7], t["B"][:, :7], t["weights"][:, :7])
    out = tmp_path / "report"
    result = cli("evaluate", sep, "--truth", tiny_map / "truth.zarr", "--out", out, "--no-index")
    assert result.exit_code == 2
    assert "shape mismatch" in result.output and "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "report.partial").exists()


def test_wrong_store_kinds_exit_2(cli, tiny_map, tmp_path):
    truth = tiny_map / "truth.zarr"
    result = cli("evaluate", truth, "--truth", truth, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "expected a 'separated' store" in result.output
    result = cli("evaluate", tmp_path / "missing.zarr", "--truth", truth, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "not found" in result.output


def test_pixel_metrics_perfect_and_swapped(cli, tiny_map, tmp_path, write_separated):
    t = _truth(tiny_map)
    A, B, w = t["A"][...], t["B"][...], t["weights"][...]
    scores = {}
    for name, (a, b, ww) in {"perfect": (A, B, w), "swapped": (B, A, w[..., ::-1])}.items():
        sep = write_separated(tmp_path / f"{name}.zarr", a, b, ww)
        out = tmp_path / f"report_{name}"
        result = cli("evaluate", sep, "--truth", tiny_map / "truth.zarr", "--out", out, "--no-index")
        assert result.exit_code == 0, result.output
        m = json.loads((out / "metrics.json").read_text())
        scores[name] = m["pixel"]
        assert (out / "report.md").is_file() and (out / "examples.png").is_file()
    p = scores["perfect"]
    assert p["mixed"]["n"] > 0
    assert p["mixed"]["ncc_a"]["mean"] == pytest.approx(1.0)
    assert p["mixed"]["ncc_b"]["mean"] == pytest.approx(1.0)
    assert p["mixed"]["ssim_b"]["mean"] == pytest.approx(1.0)
    assert p["mixed"]["weight_error"]["mean"] == pytest.approx(0.0)
    s = scores["swapped"]
    assert s["swapped_fraction"] > 0.5
    for group in ("mixed", "pure"):
        for key in ("ncc_a", "psnr_a", "ssim_a", "weight_error"):
            assert s[group][key]["mean"] == pytest.approx(p[group][key]["mean"])


@pytest.mark.slow
def test_orientation_recovery_perfect_zero_and_baselines(cli, tiny_map, tmp_path, write_separated,
                                                         warm_indexer):
    t = _truth(tiny_map)
    A, B, w = t["A"][...], t["B"][...], t["weights"][...]
    perfect = write_separated(tmp_path / "perfect.zarr", B, A, w[..., ::-1])  # swapped: same score
    zeros = write_separated(tmp_path / "zeros.zarr", np.zeros_like(A), np.zeros_like(B), np.zeros_like(w))

    result = cli("evaluate", perfect, "--truth", tiny_map / "truth.zarr", "--out", tmp_path / "rp")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "rp" / "metrics.json").read_text())
    rec = m["recovery"]
    assert set(rec) == {"kdeconv", "raw", "residual", "truth"}
    for tol in ("1", "3"):
        for method in ("kdeconv", "truth"):  # the perfect separation reaches the indexer's ceiling
            row = rec[method]["tolerances_deg"][tol]
            assert row["mixed_both"] == 1.0 and row["pure_ok"] == 1.0
    # Indexing the mixture finds at most one grain: never both.
    assert rec["raw"]["tolerances_deg"]["3"]["mixed_both"] == 0.0
    assert rec["raw"]["tolerances_deg"]["3"]["pure_ok"] == 1.0
    for png in ("recovery_overall.png", "recovery_by_weight.png", "maps.png", "weights.png"):
        assert (tmp_path / "rp" / png).is_file()
    assert "residual subtraction" in (tmp_path / "rp" / "report.md").read_text()
    assert rec["kdeconv"]["median_error_deg_b_mixed"] < 0.5
    # per pattern, the indexer's confidence in each second pattern: a claim needs the rule's bar
    per = np.load(tmp_path / "rp" / "per_pattern.npz")
    claimed, cm = per["kdeconv_second_claimed"], per["kdeconv_second_cm"]
    assert cm.shape == claimed.shape and claimed.any()
    assert (cm[claimed] >= m["neighbour_claims"]["min_cm"]).all()

    # A pairs store (n, sy, sx) works as truth too; its detector comes from the generate config.
    pairs = _pairs_store(tmp_path / "pairs.zarr", t)
    sep = write_separated(tmp_path / "sep_pairs.zarr", A.reshape(-1, *A.shape[2:]),
                          B.reshape(-1, *B.shape[2:]), w.reshape(-1, 2))
    result = cli("evaluate", sep, "--truth", pairs, "--out", tmp_path / "rpairs", "--no-baselines")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "rpairs" / "metrics.json").read_text())
    assert m["truth_kind"] == "pairs" and m["recovery"]["kdeconv"]["tolerances_deg"]["3"]["mixed_both"] == 1.0

    result = cli("evaluate", zeros, "--truth", tiny_map / "truth.zarr", "--out", tmp_path / "rz",
                 "--no-baselines")
    assert result.exit_code == 0, result.output
    assert "all zeros" in result.output
    m = json.loads((tmp_path / "rz" / "metrics.json").read_text())
    assert m["warnings"] and set(m["recovery"]) == {"kdeconv", "truth"}
    row = m["recovery"]["kdeconv"]["tolerances_deg"]["3"]
    assert row["mixed_both"] == 0.0 and row["mixed_minority"] == 0.0 and row["pure_kept"] == 0.0
    assert m["pixel"]["mixed"]["ncc_a"]["mean"] == 0.0


@pytest.mark.slow
def test_a_second_grain_that_no_neighbour_holds_is_not_claimed(cli, tiny_map, tmp_path, write_separated,
                                                               warm_indexer):
    """Pure pixels given a confident B of an orientation no grain of the map has: claimed (and
    invented) with the neighbour rule off, refused with it on; B of the grain next door is seen."""
    from orix.quaternion import Rotation

    from kdeconv.config.detector import DetectorSpec
    from kdeconv.evaluate.metrics import minmax01
    from kdeconv.evaluate.reference import simulate_at

    t = _truth(tiny_map)
    A, B, w = t["A"][...], t["B"][...], t["weights"][...].copy()
    pure = w.min(axis=-1) < 0.05
    foreign = (Rotation(t["rotation_a"][...][pure][:1]) * Rotation.from_axes_angles([1, 2, 3], 0.6)).data
    detector = DetectorSpec.from_attrs(t.attrs["detector"]).to_kikuchipy()
    B = B.copy()
    B[pure] = np.rint(minmax01(simulate_at(foreign, detector, "ni")) * 65535).astype(B.dtype)
    w[pure] = [0.7, 0.3]
    sep = write_separated(tmp_path / "foreign.zarr", A, B, w)
    (tmp_path / "off.yaml").write_text("claim_neighbour_px: null\n")
    reports = {}
    for name, extra in (("on", []), ("off", ["--config", tmp_path / "off.yaml"])):
        result = cli("evaluate", sep, "--truth", tiny_map / "truth.zarr", "--out", tmp_path / name,
                     "--no-baselines", *extra)
        assert result.exit_code == 0, result.output
        reports[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    off = reports["off"]["recovery"]["kdeconv"]["tolerances_deg"]["3"]
    on = reports["on"]["recovery"]["kdeconv"]["tolerances_deg"]["3"]
    assert off["pure_invented"] == 1.0 and on["pure_invented"] == 0.0 and on["pure_ok"] == 1.0
    assert on["mixed_both"] == off["mixed_both"] == 1.0  # the mixed pixels' Bs are the neighbours
    counts = reports["on"]["neighbour_claims"]["kdeconv"]
    assert counts["unseen_nearby"] == int(pure.sum()) and "neighbour_claims" not in reports["off"]
    assert "scan steps has as its dominant grain" in (tmp_path / "on" / "report.md").read_text()
    per = np.load(tmp_path / "on" / "per_pattern.npz")
    np.testing.assert_array_equal(per["kdeconv_second_unseen_nearby"], pure.reshape(-1))
    assert "kdeconv_second_unseen_nearby" not in np.load(tmp_path / "off" / "per_pattern.npz")


def test_truth_without_detector_needs_no_index(cli, tiny_map, tmp_path, write_separated):
    t = _truth(tiny_map)
    pairs = _pairs_store(tmp_path / "pairs.zarr", t)
    import zarr as _zarr

    g = _zarr.open_group(str(pairs), mode="r+")
    attrs = dict(g.attrs)
    attrs["config"]["source"]["pc_x"] = [0.4, 0.6]  # PC varies per pair: no single detector
    g.attrs.update(attrs)
    n = t["A"].shape[0] * t["A"].shape[1]
    sep = write_separated(tmp_path / "sep.zarr", t["A"][...].reshape(n, 60, 60),
                          t["B"][...].reshape(n, 60, 60), t["weights"][...].reshape(n, 2))
    result = cli("evaluate", sep, "--truth", pairs, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--no-index" in result.output and not (tmp_path / "r").exists()
    assert cli("evaluate", sep, "--truth", pairs, "--out", tmp_path / "r", "--no-index").exit_code == 0


def test_claim_rule_stored_with_the_model_is_used_unless_the_config_sets_one(cli, tiny_map, tmp_path,
                                                                           write_separated, warm_indexer):
    import zarr

    t = _truth(tiny_map)
    A, B, w = t["A"][...], t["B"][...], t["weights"][...]
    sep = write_separated(tmp_path / "perfect.zarr", A, B, w)
    # As `separate` copies it from a checkpoint: a bar no true minority (< 0.5) reaches.
    zarr.open_group(str(sep), mode="r+").attrs["claim_rule"] = {"claim_weight": 0.5, "claim_min_cm": 0.0}

    def run(out, *extra):
        result = cli("evaluate", sep, "--truth", tiny_map / "truth.zarr", "--out", tmp_path / out,
                     "--no-baselines", *extra)
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / out / "metrics.json").read_text())

    m = run("model_rule")
    assert m["claim_rule"]["claim_weight"] == 0.5 and m["claim_rule"]["source"]["claim_weight"] == "model"
    assert m["recovery"]["kdeconv"]["tolerances_deg"]["3"]["mixed_both"] == 0.0
    assert "the rule stored with the model" in (tmp_path / "model_rule" / "report.md").read_text()
    cfg = tmp_path / "evaluate.yaml"
    cfg.write_text("claim_weight: 0.0\n")
    m = run("config_rule", "--config", cfg)
    assert m["claim_rule"]["source"] == {"claim_weight": "config", "claim_min_cm": "model"}
    assert m["recovery"]["kdeconv"]["tolerances_deg"]["3"]["mixed_both"] == 1.0
