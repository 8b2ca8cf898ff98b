"""The neighbour fit over a simulated Ni map with known grains and footprints
(kdeconv.separate.neighbours after the in-grain claims): pairs, weights and B against the truth,
pure pixels clean, a rerun writes the same bytes, and the in-memory fit is the store's."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from pure_maps import write_map

from kdeconv.separate.claims import in_grain_claims, write_in_grain_claims
from kdeconv.separate.neighbours import NEIGHBOUR_PAIR, fit_in_memory, write_neighbour_fit

RAW = {"mode": "raw", "static": "map_mean", "static_operation": "subtract", "static_smooth_std": "auto",
       "dynamic": True, "dynamic_operation": "subtract", "dynamic_std": None, "mask": "none",
       "screen": None}


def _ncc(a, b) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def fitted(sim_map, tmp_path_factory):
    """A 24x24 map of 10 grains at 48x48 px; a separated store whose model read every pattern as
    pure (A = B = 0, weights 1/0), then the in-grain claims and the neighbour fit."""
    import dask.array as da

    from kdeconv.preprocess.background import static_background_from_mean

    sim = sim_map(dose=1500.0, seed=0)
    folder = tmp_path_factory.mktemp("neighbour_fit")
    store = write_map(folder / "map.zarr", sim.counts, (8, 8))
    nav, sig = sim.counts.shape[:2], sim.counts.shape[2:]
    group = zarr.open_group(str(folder / "sep.zarr"), mode="w")
    for name in ("A", "B"):
        group.create_array(name, data=np.zeros(sim.counts.shape, np.uint16), chunks=(8, 8) + sig)
    weights = np.zeros(nav + (2,), np.float32)
    weights[..., 0] = 1
    group.create_array("weights", data=weights, chunks=(8, 8, 2))
    group.create_array("blank", data=np.zeros(nav, bool), chunks=(8, 8))
    static = static_background_from_mean(sim.counts.reshape(-1, *sig).mean(0), "auto",
                                         background=RAW).astype(np.float32)
    claims = in_grain_claims(weights, str(store), RAW, static_bg=static)
    write_in_grain_claims(group, str(store), RAW, found=claims)
    patterns = da.from_zarr(str(store / "patterns"))
    with __import__("dask").config.set(scheduler="synchronous"):
        record = write_neighbour_fit(group, str(folder / "sep.zarr"), patterns, RAW, static, claims)
    return sim, group, record, (patterns, static, claims)


def test_pairs_weights_and_b_follow_the_truth(fitted):
    sim, group, record, _ = fitted
    pair = np.asarray(group[NEIGHBOUR_PAIR][...])
    w = np.asarray(group["weights"][...])
    top2 = np.sort(sim.fractions, axis=-1)[..., -2:]
    two_grains = (top2.sum(-1) > 0.97) & (top2[..., 0] >= 0.2)
    assert two_grains.sum() >= 30
    assert pair[two_grains].mean() >= 0.85, record
    found = two_grains & pair
    assert np.median(np.abs(w[found][:, 1] - top2[found][:, 0])) < 0.05
    # B is the second grain's pattern: it correlates with that grain above every other grain
    b = np.asarray(group["B"][...]).astype(np.float32)
    second = np.argsort(sim.fractions, axis=-1)[..., -2]
    right = [np.argmax([_ncc(b[y, x], g) for g in sim.pure]) == second[y, x] for y, x in np.argwhere(found)]
    assert np.mean(right) >= 0.95
    assert record["pairs"] == int(pair.sum()) and record["fitted"] >= record["pairs"]


def test_pure_pixels_stay_pure_and_deep_interiors_untouched(fitted):
    sim, group, _, (_, _, claims) = fitted
    pair = np.asarray(group[NEIGHBOUR_PAIR][...])
    pure = sim.minority < 0.005
    assert pure.sum() >= 200 and pair[pure].mean() <= 0.01
    deep = claims.interior >= 2
    assert not pair[deep].any()
    assert (np.asarray(group["B"][...])[deep] == 0).all()
    # the fit's pixels leave the in-grain mask (the fit's own tests stand in for its bar)
    in_grain = np.asarray(group["in_grain"][...])
    assert not (in_grain & pair).any() and (in_grain == (claims.in_grain & ~pair)).all()


def test_a_rerun_writes_the_same_bytes_and_the_in_memory_fit_matches(fitted, tmp_path):
    _, group, record, (patterns, static, claims) = fitted
    before = {name: np.asarray(group[name][...]) for name in ("A", "B", "weights", NEIGHBOUR_PAIR)}
    a, b, w, pair, again = fit_in_memory(np.asarray(patterns), before["A"], before["B"], before["weights"],
                                         np.zeros(before["weights"].shape[:-1], bool), RAW, static, claims,
                                         patterns.chunks[:2])
    # the store was fitted once: fitting its results again changes nothing
    np.testing.assert_array_equal(b, before["B"])
    np.testing.assert_array_equal(w, before["weights"])
    np.testing.assert_array_equal(pair, before[NEIGHBOUR_PAIR])
    assert again["pairs"] == record["pairs"]
    with __import__("dask").config.set(scheduler="synchronous"):
        write_neighbour_fit(group, str(group.store.root), patterns, RAW, static, claims)
    for name, values in before.items():
        np.testing.assert_array_equal(np.asarray(group[name][...]), values)


def test_the_fit_settings_come_from_the_config_or_a_switch(tmp_path):
    from kdeconv.config import load_config
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.separate.neighbour_fit import DEFAULT_SETTINGS
    from kdeconv.separate.neighbours import settings_for

    assert settings_for(SeparateConfig().neighbour_fit) == DEFAULT_SETTINGS
    off = SeparateConfig(neighbour_fit=False).neighbour_fit
    assert not off.enabled and off.radius == DEFAULT_SETTINGS.radius
    yaml = tmp_path / "separate.yaml"
    yaml.write_text("neighbour_fit:\n  radius: 4\n  far_radius: 10\n  min_minority: 0.1\n")
    settings = settings_for(load_config(SeparateConfig, yaml).neighbour_fit)
    assert (settings.radius, settings.far_radius, settings.min_minority) == (4, 10, 0.1)
    assert settings.same_crystal_ncc == DEFAULT_SETTINGS.same_crystal_ncc
    yaml.write_text("neighbour_fit:\n  radius: 0\n")
    with pytest.raises(Exception, match="neighbour_fit.radius"):
        load_config(SeparateConfig, yaml)


def test_line_scans_and_maps_without_grains_are_skipped_with_the_reason(tmp_path):
    from kdeconv.separate.neighbours import describe_neighbour_fit, skip_reason

    assert "2-D map" in skip_reason((30,), None)
    assert "grains were not found" in skip_reason((8, 8), None)
    line = describe_neighbour_fit({"skipped": skip_reason((30,), None)})
    assert line.startswith("neighbour fit: none (")


def test_separate_says_what_it_fitted_and_the_option_switches_it_off(sim_map, tmp_path, cli, dask_processes):
    sim = sim_map(dose=1500.0, seed=0)
    store = write_map(tmp_path / "map.zarr", sim.counts, (8, 8))
    on, off = tmp_path / "on.zarr", tmp_path / "off.zarr"
    r = cli("separate", store, "--out", on, "--scheduler-address", dask_processes[0])
    assert r.exit_code == 0, r.output
    (line,) = [s for s in r.output.splitlines() if s.startswith("neighbour fit:")]
    # the vote of the shipped models ran before the cluster: its seconds stand beside the passes
    (passes,) = [s for s in r.output.splitlines() if s.startswith("passes over the map:")]
    assert passes.startswith("passes over the map: model vote ") and "neighbour fit" in passes
    group = zarr.open_group(str(on), mode="r")
    record = dict(group.attrs["neighbour_fit"])
    assert f"{record['pairs']:,} of {record['fitted']:,} pixels" in line and record["pairs"] > 0
    pair = np.asarray(group[NEIGHBOUR_PAIR][...])
    assert pair.sum() == record["pairs"]
    assert group.attrs["resume_key"]["neighbour_fit"] == {"enabled": True, "radius": 3, "far_radius": 6,
                                                          "min_minority": 0.07}
    # a shorter reach, no far ring: the fit says so, records it and fits fewer pixels
    near = tmp_path / "near.zarr"
    r = cli("separate", store, "--out", near, "--neighbour-radius", "2", "--neighbour-far-radius", "0",
            "--model", "default", "--scheduler-address", dask_processes[0])
    assert r.exit_code == 0, r.output
    (near_line,) = [s for s in r.output.splitlines() if s.startswith("neighbour fit:")]
    near_group = zarr.open_group(str(near), mode="r")
    near_record = dict(near_group.attrs["neighbour_fit"])
    assert (near_record["radius_px"], near_record["far_radius_px"]) == (2, 0)
    assert "within 2 steps;" in near_line
    assert 0 < near_record["fitted"] < record["fitted"]
    assert near_group.attrs["resume_key"]["neighbour_fit"]["radius"] == 2
    r = cli("separate", store, "--out", off, "--no-neighbour-fit", "--scheduler-address", dask_processes[0])
    assert r.exit_code == 0, r.output
    assert "neighbour fit" not in r.output
    plain = zarr.open_group(str(off), mode="r")
    assert NEIGHBOUR_PAIR not in plain and "neighbour_fit" not in plain.attrs
    # the same model outputs where the fit kept no pair, the fit's B where it did
    b_on, b_off = np.asarray(group["B"][...]), np.asarray(plain["B"][...])
    np.testing.assert_array_equal(b_on[~pair], b_off[~pair])
    assert (b_on[pair] != b_off[pair]).any(axis=(-1, -2)).all()


def test_a_round_screens_square_is_fitted_and_b_put_back_in_its_place(fitted):
    """The same map through a round screen smaller than the pattern (cut to its square, then
    masked): the fit reads the square, finds the same pairs, and B is the second grain's mean
    inside the square, zero around it, as the model's A and B are."""
    from kdeconv.preprocess.background import static_background_from_mean

    sim, _, _, (patterns, _, claims) = fitted
    screen = {**RAW, "mask": "circle", "screen": [4, 4, 40]}
    nav, sig = sim.counts.shape[:2], sim.counts.shape[2:]
    static = static_background_from_mean(sim.counts.reshape(-1, *sig).mean(0), "auto",
                                         background=screen).astype(np.float32)
    zeros = np.zeros(sim.counts.shape, np.uint16)
    weights = np.zeros(nav + (2,), np.float32)
    weights[..., 0] = 1
    _, b, w, pair, record = fit_in_memory(np.asarray(patterns), zeros, zeros.copy(), weights,
                                          np.zeros(nav, bool), screen, static, claims, patterns.chunks[:2])
    assert "skipped" not in record and record["pairs"] == int(pair.sum())
    top2 = np.sort(sim.fractions, axis=-1)[..., -2:]
    two_grains = (top2.sum(-1) > 0.97) & (top2[..., 0] >= 0.2)
    assert pair[two_grains].mean() >= 0.85
    found = two_grains & pair
    assert np.median(np.abs(w[found][:, 1] - top2[found][:, 0])) < 0.05
    inside = np.zeros(sig, bool)
    inside[4:44, 4:44] = True
    assert (b[pair][:, ~inside] == 0).all()
    second = np.argsort(sim.fractions, axis=-1)[..., -2]
    square = (slice(4, 44), slice(4, 44))
    right = [np.argmax([_ncc(b[y, x][square].astype(np.float32), g[square]) for g in sim.pure])
             == second[y, x] for y, x in np.argwhere(found)]
    assert np.mean(right) >= 0.95


def test_a_vendor_masked_map_is_compared_inside_its_mask(fitted):
    """The same map as vendor software exports it (background removed, zero outside a circle, 8
    bits), which the recipe leaves as it is: the fit compares the pixels that vary from pattern to
    pattern, where the zeros outside would make distinct grains alike. Two grains' means then
    correlate as distinct crystals, and the pairs, weights and Bs follow the truth. A mask
    smaller than the inscribed circle is found as it is."""
    from kdeconv.config.simulate_map import ProcessedSpec
    from kdeconv.evaluate.simulate_map import vendor_processed
    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.preprocess.mask import circular_mask
    from kdeconv.separate.neighbour_fit import fit_shape_for, fit_window, seen_patterns, unit_vectors
    from kdeconv.separate.neighbours import describe_neighbour_fit

    sim, _, _, (_, _, claims) = fitted
    nav, sig = sim.counts.shape[:2], sim.counts.shape[2:]
    flat = sim.counts.reshape(-1, *sig).astype(np.float32)
    static = static_background_from_mean(flat.mean(0), "auto", background=RAW).astype(np.float32)
    exported = vendor_processed(flat, static, ProcessedSpec()).reshape(sim.counts.shape)
    processed = {**RAW, "mode": "processed", "static": "none", "dynamic": False}
    blank = np.zeros(nav, bool)
    shape = fit_shape_for(sig)
    pre = seen_patterns(exported, blank, processed)
    window = fit_window(pre, shape)
    np.testing.assert_array_equal(window, circular_mask(shape))
    assert fit_window(seen_patterns(sim.counts, blank, RAW, static), shape) is None
    assert fit_window(pre[:1, :1], shape) is None  # one pattern tells nothing
    smaller = circular_mask(sig, radius=0.4 * sig[0])
    np.testing.assert_array_equal(fit_window(pre * smaller, shape), smaller)

    grain = np.argmax(sim.fractions, axis=-1)
    pure = np.max(sim.fractions, axis=-1) > 0.999
    first, second = (np.argwhere(pure & (grain == g))[:8] for g in np.unique(grain[pure])[:2])

    def ncc_of_means(compared):
        means = [unit_vectors(pre[tuple(at.T)], shape, compared).mean(0) for at in (first, second)]
        return float(means[0] @ means[1] / np.linalg.norm(means[0]) / np.linalg.norm(means[1]))

    assert ncc_of_means(window) < 0.3 < ncc_of_means(None)

    zeros = np.zeros(sim.counts.shape, np.uint8)
    weights = np.zeros(nav + (2,), np.float32)
    weights[..., 0] = 1
    _, b, w, pair, record = fit_in_memory(exported, zeros, zeros.copy(), weights, blank, processed,
                                          None, claims, ((8, 8, 8), (8, 8, 8)))
    assert record["compared"] == pytest.approx(float(circular_mask(shape).mean()), abs=1e-4)
    assert record["pairs"] == int(pair.sum())
    assert "compared on the 78% of pattern pixels that vary" in describe_neighbour_fit(record)
    top2 = np.sort(sim.fractions, axis=-1)[..., -2:]
    two_grains = (top2.sum(-1) > 0.97) & (top2[..., 0] >= 0.2)
    assert pair[two_grains].mean() >= 0.85
    found = two_grains & pair
    assert np.median(np.abs(w[found][:, 1] - top2[found][:, 0])) < 0.05
    second_grain = np.argsort(sim.fractions, axis=-1)[..., -2]
    right = [np.argmax([_ncc(b[y, x].astype(np.float32), g) for g in sim.pure]) == second_grain[y, x]
             for y, x in np.argwhere(found)]
    assert np.mean(right) >= 0.95


def test_the_fit_is_the_same_whatever_the_chunks_and_the_far_ring_only_adds(fitted, monkeypatch):
    """Each tile reads a halo as far as the fit looks (``reach``): the pairs and weights do not
    depend on the chunking, nor on how chunks are merged into tiles. Looking farther where fewer
    than two grains are near adds pixels and changes none that the radius alone fits."""
    from dataclasses import replace

    import kdeconv.separate.neighbours as neighbours
    from kdeconv.separate.neighbour_fit import DEFAULT_SETTINGS, reach

    _, _, _, (patterns, static, claims) = fitted
    raw = np.asarray(patterns)
    nav = raw.shape[:2]
    weights = np.zeros(nav + (2,), np.float32)
    weights[..., 0] = 1
    blank = np.zeros(nav, bool)

    def fit(chunks, settings=DEFAULT_SETTINGS):
        return fit_in_memory(raw, None, None, weights, blank, RAW, static, claims, chunks, settings)[2:4]

    assert reach(DEFAULT_SETTINGS) > DEFAULT_SETTINGS.radius
    whole_w, whole_pair = fit(((nav[0],), (nav[1],)))
    chunkings = (((8, 8, 8), (8, 8, 8)), ((5, 7, 12), (11, 13)), ((2,) * 12, (24,)))
    for tile_bytes in (neighbours.TILE_BYTES, 0):  # merged into tiles, then every chunk its own
        monkeypatch.setattr(neighbours, "TILE_BYTES", tile_bytes)
        for chunks in chunkings:
            w, pair = fit(chunks)
            np.testing.assert_array_equal(pair, whole_pair)
            np.testing.assert_array_equal(w, whole_w)
    near_w, near_pair = fit(((8, 8, 8), (8, 8, 8)), replace(DEFAULT_SETTINGS, far_radius=0))
    assert not (near_pair & ~whole_pair).any()
    np.testing.assert_array_equal(whole_w[near_pair], near_w[near_pair])


def test_chunks_merge_into_tiles_within_the_memory_bar():
    from kdeconv.separate.neighbours import TILE_BYTES, fit_tiles

    # three rows of 480 px patterns (608 KB each with their preprocessed copy): merged up to 12
    # rows, whose halo of 6 steps keeps the tile under TILE_BYTES
    assert fit_tiles(((3,) * 8, (24,)), 6, 608_256) == ((12, 12), (24,))
    assert (12 + 12) * (24 + 12) * 608_256 <= TILE_BYTES < (15 + 12) * (24 + 12) * 608_256
    # a sliver at the end joins the tile before it; a tile of 4 reaches (24 rows) stops merging
    assert fit_tiles(((46, 4), (50,)), 6, 86_400) == ((50,), (50,))
    assert fit_tiles(((10,) * 10, (8,)), 6, 1_000) == ((30, 30, 30, 10), (8,))
    # one chunk's halo over the bar already: chunks stay as they are
    assert fit_tiles(((1,) * 8, (67, 67, 66)), 6, 724_992) == ((1,) * 8, (67, 67, 66))


def test_large_patterns_are_fitted_smaller_as_they_are_at_full_size(tmp_path, monkeypatch):
    """Patterns above ``PREPROCESS_SIDE`` are preprocessed area-averaged to it (the background's
    blurs at full size cost 5x the model at 480 px): the same pairs and weights as at full size,
    and B back at the patterns' own size."""
    from pure_maps import simulated_map

    import kdeconv.separate.neighbour_fit as nf
    from kdeconv.preprocess.background import static_background_from_mean

    sim = simulated_map(nav_shape=(16, 16), n_grains=5, sig_shape=(240, 240), dose=1500.0, seed=2)
    store = write_map(tmp_path / "map.zarr", sim.counts, (8, 8))
    nav, sig = sim.counts.shape[:2], sim.counts.shape[2:]
    static = static_background_from_mean(sim.counts.reshape(-1, *sig).mean(0), "auto",
                                         background=RAW).astype(np.float32)
    weights = np.zeros(nav + (2,), np.float32)
    weights[..., 0] = 1
    blank = np.zeros(nav, bool)
    claims = in_grain_claims(weights, str(store), RAW, static_bg=static)
    assert nf.seen_patterns(sim.counts[:1, :2], blank[:1, :2], RAW, static).shape == (1, 2, 192, 192)

    def fit():
        zeros = np.zeros(sim.counts.shape, np.uint16)
        return fit_in_memory(sim.counts, zeros, zeros.copy(), weights, blank, RAW, static, claims,
                             ((8, 8), (8, 8)))

    _, b, w, pair, record = fit()
    monkeypatch.setattr(nf, "PREPROCESS_SIDE", 10_000)
    _, b_full, w_full, pair_full, _ = fit()
    assert record["pairs"] >= 10
    np.testing.assert_array_equal(pair, pair_full)
    assert np.abs(w - w_full)[pair].max() < 0.01
    assert b.shape == sim.counts.shape
    assert min(_ncc(b[y, x], b_full[y, x]) for y, x in np.argwhere(pair)) > 0.95
