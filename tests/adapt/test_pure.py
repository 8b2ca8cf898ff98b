"""Kernels of the pure-pattern search, on small arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from kdeconv.adapt.pure import (
    adaptive_threshold,
    background_settings,
    choose_pure,
    crystal_groups,
    feature_shape,
    interior_distance,
    neighbour_similarity,
    pattern_features,
    pure_candidates,
    relative_similarity,
    segment_contacts,
    segment_grains,
)
from kdeconv.errors import InputError
from kdeconv.preprocess import circular_mask
from kdeconv.separate.driver import static_background_from_mean

NO_BACKGROUND = {"static": "none", "dynamic": False}


def _block_mean(patterns, factor):
    n, sy, sx = patterns.shape
    return patterns.reshape(n, sy // factor, factor, sx // factor, factor).mean(axis=(2, 4))


def test_feature_shape_keeps_aspect_and_never_upsamples():
    assert feature_shape((60, 60)) == (16, 16)
    assert feature_shape((48, 64)) == (12, 16)
    assert feature_shape((10, 12)) == (10, 12)
    assert feature_shape((120, 120), side=24) == (24, 24)


def test_features_dot_product_is_the_ncc_of_the_binned_patterns():
    rng = np.random.default_rng(0)
    patterns = rng.poisson(200, size=(5, 48, 48)).astype(np.uint16)
    features = pattern_features(patterns, NO_BACKGROUND)
    assert features.shape == (5, 256) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(features.mean(axis=1), 0, atol=1e-6)
    # 48 px in 16 bins: plain 3x3 block means; the per-pattern stretch does not change an NCC.
    expected = np.corrcoef(_block_mean(patterns.astype(np.float64), 3).reshape(5, -1))
    np.testing.assert_allclose(features @ features.T, expected, atol=1e-5)


def test_features_with_separates_background_need_the_static_pattern():
    rng = np.random.default_rng(1)
    patterns = rng.poisson(200, size=(4, 32, 32)).astype(np.uint16)
    with pytest.raises(ValueError, match="static background"):
        pattern_features(patterns, {})
    static_bg = static_background_from_mean(patterns.mean(axis=0), "auto")
    features = pattern_features(patterns, {}, static_bg)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)
    # Only dynamic removal: no static pattern needed.
    assert pattern_features(patterns, {"static": "none"}).shape == (4, 256)


def test_a_bad_background_setting_is_an_input_error():
    with pytest.raises(InputError, match="static"):
        background_settings({"static": "mean"})
    with pytest.raises(InputError, match="background"):
        background_settings("map_mean")


def test_masked_patterns_do_not_correlate_through_their_mask():
    rng = np.random.default_rng(2)
    mask = circular_mask((48, 48))
    patterns = (rng.random((6, 48, 48)) * 200 + 50) * mask
    features = pattern_features(patterns, NO_BACKGROUND)
    inside_half = _block_mean(mask[None].astype(float), 3)[0] >= 0.5
    assert (~inside_half).sum() >= 4 and np.all(features[:, ~inside_half.reshape(-1)] == 0)
    off_diagonal = (features @ features.T)[~np.eye(6, dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.35
    # Counting the zero outside as signal makes independent patterns look alike.
    unmasked = pattern_features(patterns, NO_BACKGROUND, masked=False)
    assert (unmasked @ unmasked.T)[~np.eye(6, dtype=bool)].min() > 0.5


def test_a_screens_patterns_are_compared_inside_its_square_and_circle():
    rng = np.random.default_rng(3)
    patterns = rng.poisson(200, size=(4, 48, 48)).astype(np.uint16)
    screened = {**NO_BACKGROUND, "mask": "circle", "screen": [5, 9, 32]}
    features = pattern_features(patterns, screened)
    square = patterns[:, 5:37, 9:41]
    np.testing.assert_array_equal(features, pattern_features(square * circular_mask((32, 32)), NO_BACKGROUND))
    assert features.shape == (4, 256)


def test_flat_pattern_gives_the_zero_vector():
    patterns = np.full((2, 32, 32), 7, np.uint16)
    assert np.all(pattern_features(patterns, NO_BACKGROUND) == 0)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_neighbour_similarity_channels_and_map_edge():
    rng = np.random.default_rng(3)
    f = _unit(rng.standard_normal((3, 4, 10))).astype(np.float32)
    sim = neighbour_similarity(f)
    assert sim.shape == (3, 4, 8)
    offsets = [(0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (2, 2), (2, -2)]
    for c, (dy, dx) in enumerate(offsets):
        for y in range(3):
            for x in range(4):
                if 0 <= y + dy < 3 and 0 <= x + dx < 4:
                    assert sim[y, x, c] == pytest.approx(float(f[y, x] @ f[y + dy, x + dx]), abs=1e-6)
                else:
                    assert np.isnan(sim[y, x, c])
    assert neighbour_similarity(f, reach=1).shape == (3, 4, 4)
    np.testing.assert_array_equal(neighbour_similarity(f, reach=1), sim[..., :4])


def test_line_scan_is_one_row():
    rng = np.random.default_rng(4)
    f = _unit(rng.standard_normal((6, 10))).astype(np.float32)
    sim = neighbour_similarity(f)
    assert sim.shape == (1, 6, 8)
    np.testing.assert_allclose(sim[0, :-1, 0], np.sum(f[:-1] * f[1:], axis=1), atol=1e-6)
    np.testing.assert_allclose(sim[0, :-2, 4], np.sum(f[:-2] * f[2:], axis=1), atol=1e-6)
    assert np.isnan(sim[..., [1, 2, 3, 5, 6, 7]]).all()


def test_relative_similarity_divides_out_each_patterns_noise_level():
    # Grain of level 0.5 (every adjacent NCC 0.5) beside one of level 0.9, one row.
    sim = np.full((1, 4, 4), np.nan, np.float32)
    sim[0, :3, 0] = [0.5, 0.3, 0.9]
    rel = relative_similarity(sim)
    # Levels: 0.5, 0.5, 0.9, 0.9 (each pattern's best adjacent NCC).
    np.testing.assert_allclose(rel[0, :3, 0], [1.0, 0.3 / np.sqrt(0.5 * 0.9), 1.0], rtol=1e-6)
    assert np.isnan(rel[0, 3, 0]) and np.isnan(rel[..., 1:]).all()


def test_adaptive_threshold_rule_known_answer():
    values = np.repeat([0.3, 0.96, 0.97, 0.98], 25).reshape(-1, 4)
    # Upper half 0.97/0.98: level 0.975, robust noise 1.4826 * 0.005; level - 4 noise wins.
    assert adaptive_threshold(values) == pytest.approx(0.975 - 4 * 1.4826 * 0.005)
    # Channels 4-7 (two steps away) do not count, nor pairs at exactly 1 (mutual best pairs of
    # the relative NCC, 1 by construction).
    wide = np.concatenate([values, np.zeros_like(values)], axis=-1)
    assert adaptive_threshold(wide) == adaptive_threshold(values)
    assert adaptive_threshold(np.concatenate([values, np.ones((40, 4))])) == adaptive_threshold(values)


def test_adaptive_threshold_follows_the_noise_level():
    rng = np.random.default_rng(5)

    def values(level, noise, n=4000, boundary=0.3):
        inside = level + noise * rng.standard_normal(int(n * (1 - boundary)))
        across = rng.uniform(0.0, level * 0.7, int(n * boundary))
        return np.concatenate([inside, across]).reshape(-1, 4)

    clean, noisy = adaptive_threshold(values(0.99, 0.005)), adaptive_threshold(values(0.9, 0.02))
    assert 0.96 < clean < 0.99
    assert 0.80 < noisy < 0.87
    # Very noisy: the floor (0.85 of the level) holds the bar above the mixtures.
    very = np.minimum(values(0.6, 0.12), 0.999)
    upper = very[very >= np.median(very)]
    assert adaptive_threshold(very) == pytest.approx(0.85 * np.median(upper))


def _two_grain_features(ny=8, nx=10, boundary=5, noise=0.05, seed=6):
    """Grain a left of column ``boundary``, grain b right of it, a 50/50 mixture column between."""
    rng = np.random.default_rng(seed)
    a, b = _unit(rng.standard_normal((2, 64)))
    f = np.empty((ny, nx, 64))
    f[:, :boundary] = a
    f[:, boundary + 1:] = b
    f[:, boundary] = _unit(a + b)
    f += noise / 8 * rng.standard_normal(f.shape)
    return _unit(f - f.mean(-1, keepdims=True)).astype(np.float32)


def test_segment_two_grains_leaves_the_mixture_out():
    sim = relative_similarity(neighbour_similarity(_two_grain_features()))
    labels = segment_grains(sim)
    assert labels.dtype == np.int32
    assert (labels[:, :5] == 0).all() and (labels[:, 6:] == 1).all()
    assert (labels[:, 5] == -1).all()


def test_segment_drops_small_regions():
    sim = relative_similarity(neighbour_similarity(_two_grain_features(ny=3, nx=10, boundary=2)))
    labels = segment_grains(sim, min_size=9)
    assert (labels[:, :2] == -1).all() and (labels[:, 3:] == 0).all()
    assert (segment_grains(sim, min_size=6, core_fraction=0.3)[:, :2] == 0).all()


def test_core_rule_stops_chaining_through_mixtures(sim_map):
    # A simulated map where noise lets boundary mixtures link both of their grains.
    sim = sim_map(dose=300.0, seed=0)
    counts = sim.counts.reshape((-1,) + sim.counts.shape[2:])
    static_bg = static_background_from_mean(counts.mean(axis=0), "auto")
    features = pattern_features(counts, {}, static_bg).reshape(sim.grain.shape + (-1,))
    rel = relative_similarity(neighbour_similarity(features))
    threshold = adaptive_threshold(rel)

    def merged(labels):
        pure = sim.minority < 0.05
        return sum(len(set(sim.grain[(labels == g) & pure].tolist())) > 1 for g in range(labels.max() + 1))

    assert merged(segment_grains(rel, threshold, core_fraction=0.0)) > 0  # plain single linkage
    assert merged(segment_grains(rel, threshold)) == 0


def test_interior_distance_known_answers():
    labels = np.zeros((5, 5), np.int32)
    labels[:, 4] = 1
    labels[2, 0] = -1
    inner = interior_distance(labels, edge_is_boundary=False)
    assert inner[0, 3] == 1 and inner[0, 2] == 2 and inner[0, 1] == pytest.approx(np.sqrt(5))
    assert inner[2, 0] == 0 and inner[2, 1] == 1 and inner[0, 0] == 2
    assert (inner[:, 4] == 1).all()
    edged = interior_distance(labels)
    assert edged[0, 2] == 1 and edged[1, 2] == 2 and edged[2, 2] == 2
    whole = interior_distance(np.zeros((3, 4), np.int32), edge_is_boundary=False)
    assert np.isinf(whole).all()
    np.testing.assert_array_equal(interior_distance(np.zeros((3, 4), np.int32))[1], [1, 2, 2, 1])
    # A line scan: the edge counts along the line only.
    np.testing.assert_array_equal(interior_distance(np.array([0, 0, 0, 0, -1, 1, 1])),
                                  [1, 2, 2, 1, 0, 1, 1])


def _grid_case():
    """A clean 12x16 map: grain 0 left of column 8, grain 1 right of it."""
    f = _two_grain_features(ny=12, nx=16, boundary=8, noise=0.02)
    sim = relative_similarity(neighbour_similarity(f))
    threshold = adaptive_threshold(sim)
    labels = segment_grains(sim, threshold)
    return sim, threshold, labels, interior_distance(labels)


def test_candidates_keep_away_from_boundaries_and_take_the_second_vote():
    sim, threshold, labels, interior = _grid_case()
    candidates = pure_candidates(labels, interior, sim, threshold)
    assert candidates.any()
    assert (interior[candidates] >= 2).all()
    assert not candidates[:, [0, 7, 8, 9, 15]].any() and not candidates[[0, 11]].any()
    assert candidates[1:11, 1:7].mean() > 0.9 and candidates[1:11, 10:15].mean() > 0.9
    minority = np.zeros(labels.shape)
    minority[:, :8] = 0.3  # the base model calls grain 0 mixed
    voted = pure_candidates(labels, interior, sim, threshold, predicted_minority=minority)
    assert voted.any() and not voted[:, :8].any()
    np.testing.assert_array_equal(voted[:, 8:], candidates[:, 8:])
    with pytest.raises(ValueError, match="does not match"):
        pure_candidates(labels, interior, sim, threshold, predicted_minority=minority[:, :3])


def test_choose_pure_is_diverse_capped_and_deterministic():
    sim, threshold, labels, interior = _grid_case()
    candidates = pure_candidates(labels, interior, sim, threshold)
    chosen = choose_pure(labels, interior, sim, 100, 4, seed=0, threshold=threshold)
    assert chosen.dtype == np.int64
    assert candidates.reshape(-1)[chosen].all()
    grains = labels.reshape(-1)[chosen]
    assert sorted(np.bincount(grains).tolist()) == [4, 4]
    for g in (0, 1):
        rows, cols = np.divmod(chosen[grains == g], labels.shape[1])
        gaps = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
        assert gaps[~np.eye(len(rows), dtype=bool)].min() >= 2  # never adjacent
    np.testing.assert_array_equal(chosen, choose_pure(labels, interior, sim, 100, 4, seed=0,
                                                      threshold=threshold))
    # The cap goes round the grains: two patterns -> one from each grain.
    assert sorted(labels.reshape(-1)[choose_pure(labels, interior, sim, 2, 4, seed=0)].tolist()) == [0, 1]
    assert choose_pure(labels, interior, sim, 0, 4, seed=0).size == 0


def test_segments_meet_where_both_lie_within_the_radius_of_one_pixel():
    """Segments 0 | 1 two columns apart meet at the pixel between them, and each gives its
    pixels within 3 steps of it (its nearest ones when asked); segment 2, eight columns from
    segment 1, meets nobody."""
    labels = np.full((7, 20), -1)
    labels[:, :5], labels[:, 7:10], labels[:, 18:] = 0, 1, 2
    contacts = segment_contacts(labels, [0, 1, 2], radius=3)
    assert [(i, j) for i, j, *_ in contacts] == [(0, 1)]
    _, _, at_0, at_1 = contacts[0]
    rows_0, cols_0 = np.unravel_index(at_0, labels.shape)
    rows_1, cols_1 = np.unravel_index(at_1, labels.shape)
    # the meeting pixel is midway, in column 5 or 6, with a full window of rows
    assert (cols_0.min(), cols_0.max(), cols_1.min(), cols_1.max()) in {(2, 4, 7, 8), (3, 4, 7, 9)}
    assert (labels.flat[at_0] == 0).all() and (labels.flat[at_1] == 1).all()
    assert set(rows_0) == set(rows_1) and len(set(rows_0)) == 7
    nearest = segment_contacts(labels, [0, 1, 2], radius=3, nearest=4)[0]
    assert len(nearest[2]) == len(nearest[3]) == 4
    assert set(nearest[2]) <= set(at_0) and set(nearest[3]) <= set(at_1)
    # only the segments asked about are read
    assert segment_contacts(labels, [0, 2], radius=3) == []


def test_segments_joined_in_pairs_share_one_crystal_transitively():
    segments = np.array([5, 3, 3, 9, 7, 5, 11])
    crystals = crystal_groups(segments, [(3, 5), (9, 5)])
    np.testing.assert_array_equal(crystals, [3, 3, 3, 3, 7, 3, 11])
    np.testing.assert_array_equal(crystal_groups(segments, []), segments)
