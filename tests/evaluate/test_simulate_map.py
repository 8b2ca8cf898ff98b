import numpy as np
import zarr


def test_simulate_map_truth_and_up2(cli, tmp_path):
    out = tmp_path / "sim"
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("seed: 1\nnav_shape: [6, 7]\nn_grains: 3\nfootprint: {radius: 1.5}\n"
                   "detector: {shape: [32, 40], pc: [0.5, 0.45, 0.55]}\n")
    result = cli("simulate-map", "--config", cfg, "--out", out)
    assert result.exit_code == 0, result.output
    assert "mixed" in result.output

    truth = zarr.open_group(str(out / "truth.zarr"), mode="r")
    assert truth.attrs["kdeconv_kind"] == "truth"
    assert truth.attrs["detector"]["shape"] == [32, 40]
    w = truth["weights"][...]
    assert w.shape == (6, 7, 2) and np.allclose(w.sum(-1), 1.0) and (w[..., 0] >= w[..., 1]).all()
    pure = w[..., 1] == 0
    mixed = ~pure
    assert pure.any() and mixed.any()
    gb, rb = truth["grain_b"][...], truth["rotation_b"][...]
    assert (gb[pure] == -1).all() and np.isnan(rb[pure]).all() and np.isfinite(rb[mixed]).all()
    assert (truth["B"][...][pure] == 0).all()
    for name in ("A", "B", "C"):
        assert truth[name].shape == (6, 7, 32, 40) and truth[name].dtype == np.uint16
    # Clean truth: pure pixels of one grain carry that grain's pattern exactly.
    ga, A = truth["grain_a"][...], truth["A"][...]
    g = ga[pure][0]
    same = pure & (ga == g)
    assert (A[same] == A[same][0]).all()

    # The UP2 is what a user would have: kikuchipy reads it back equal to the truth C.
    import kikuchipy as kp

    s = kp.load(out / "map.up2")
    assert s.data.dtype == np.uint16
    assert np.array_equal(s.data, truth["C"][...])

    # Refuses to overwrite without --overwrite (exit 2), then replaces with it.
    again = cli("simulate-map", "--config", cfg, "--out", out)
    assert again.exit_code == 2 and "already exists" in again.output
    assert cli("simulate-map", "--config", cfg, "--out", out, "--overwrite", "--seed", "2").exit_code == 0


def test_simulate_map_deformed_grains(cli, tmp_path):
    from orix.quaternion import Rotation

    cfg = tmp_path / "sim.yaml"
    flat = "seed: 2\nnav_shape: [10, 10]\nn_grains: 3\ndetector: {shape: [32, 32]}\n"
    cfg.write_text(flat + "deformation: {gradient: 1.0, scatter: 0.3}\n")
    assert cli("simulate-map", "--config", cfg, "--out", tmp_path / "bent").exit_code == 0
    (tmp_path / "flat.yaml").write_text(flat)
    assert cli("simulate-map", "--config", tmp_path / "flat.yaml", "--out", tmp_path / "flat").exit_code == 0
    bent = zarr.open_group(str(tmp_path / "bent" / "truth.zarr"), mode="r")
    flat = zarr.open_group(str(tmp_path / "flat" / "truth.zarr"), mode="r")
    # Same grains and weights; orientations spread within each grain by a few degrees.
    assert np.array_equal(bent["grain_a"][...], flat["grain_a"][...])
    assert np.array_equal(bent["weights"][...], flat["weights"][...])
    spread = np.degrees((Rotation(bent["rotation_a"][...].reshape(-1, 4).astype(float))
                         * ~Rotation(flat["rotation_a"][...].reshape(-1, 4).astype(float))).angle)
    assert 0.1 < np.median(spread) < 10 and spread.max() < 20
    # Each pixel's clean pattern is simulated at its own orientation: no two pure pixels alike.
    ga, A = bent["grain_a"][...], bent["A"][...]
    pure = bent["weights"][...][..., 1] == 0
    g = np.bincount(ga[pure]).argmax()
    same = A[pure & (ga == g)]
    assert len(same) > 3
    assert sum((p == same[0]).all() for p in same[1:]) == 0
    # The neighbour fit reads the bend from the patterns alone (its grain_coherence, on the true
    # grains here): one orientation per grain reads 1, the bent map below the fit's 0.98.
    from kdeconv.separate.neighbour_fit import DEFAULT_SETTINGS, grain_coherence, unit_vectors

    def coherence(group):
        labels = np.where(group["weights"][...][..., 1] == 0, group["grain_a"][...], -1)
        vectors = unit_vectors(group["A"][...].astype(np.float32), (32, 32))
        return grain_coherence(vectors, labels, labels >= 0)

    assert coherence(flat) > 0.999 and coherence(bent) < DEFAULT_SETTINGS.bent_coherence


def test_simulate_map_bad_config_exit_2(cli, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("nav_shape: [4, 4]\nfootprint: {shape: square}\n")
    result = cli("simulate-map", "--config", cfg, "--out", tmp_path / "x")
    assert result.exit_code == 2 and "footprint" in result.output
    assert not (tmp_path / "x").exists()
