"""pipeline raw_mix: the detector sums raw patterns; separate's preprocessing comes after (known answers)."""

import numpy as np

from kdeconv.config import validate_config
from kdeconv.config.generate import GenerateConfig
from kdeconv.generate.chunk import build_raw_pairs, draw_pairs
from kdeconv.mixing import from_uint16


def _cfg(model_input, **over):
    data = {"seed": 3, "n": 16, "pipeline": "raw_mix", "model_input": model_input,
            "source": {"kind": "map", "path": "unused.zarr"}, "weights": {"low": 0.55, "high": 0.9},
            "augment": {"flips": False}}
    data.update(over)
    return validate_config(GenerateConfig, data)


def _bands(n, shape=(40, 40), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:shape[0], :shape[1]] / shape[0]
    out = np.empty((n,) + shape, np.float32)
    for i in range(n):
        theta = rng.uniform(0, np.pi, 3)
        out[i] = sum(np.exp(-((x * np.cos(t) + y * np.sin(t) - 0.5) / 0.05) ** 2) for t in theta)
    return out


def test_mixing_happens_on_raw_counts_before_the_background_is_removed():
    signal = _bands(8) * 100
    y, x = np.mgrid[:40, :40] / 40
    background = (2000 * np.exp(-((y - 0.5) ** 2 + (x - 0.5) ** 2) / 0.5)).astype(np.float32)
    raw = signal + background
    # static removal only, with the exact background: C is the mixed signal, stretched
    cfg = _cfg({"background": "raw", "static_background": "bg.npy", "dynamic": False})
    draws = draw_pairs(cfg, 0, 4, 8, square=True)
    out = build_raw_pairs(cfg, draws, raw[draws.pos_a], raw[draws.pos_b], background)
    w = draws.weights
    mixed = w[:, 0, None, None] * signal[draws.pos_a] + w[:, 1, None, None] * signal[draws.pos_b]
    lo, hi = mixed.min(axis=(1, 2), keepdims=True), mixed.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(from_uint16(out["C"]), (mixed - lo) / (hi - lo), atol=2e-4)
    # the targets are each pure pattern with the same preprocessing
    pure = signal[draws.pos_a]
    lo, hi = pure.min(axis=(1, 2), keepdims=True), pure.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(from_uint16(out["A"]), (pure - lo) / (hi - lo), atol=2e-4)
    # preprocessing each pure pattern first, then mixing, would give something else
    pre = [(x - x.min(axis=(1, 2), keepdims=True)) / np.ptp(x, axis=(1, 2), keepdims=True)
           for x in (signal[draws.pos_a], signal[draws.pos_b])]
    wrong = w[:, 0, None, None] * pre[0] + w[:, 1, None, None] * pre[1]
    wrong = (wrong - wrong.min(axis=(1, 2), keepdims=True)) / np.ptp(wrong, axis=(1, 2), keepdims=True)
    assert np.abs(from_uint16(out["C"]) - wrong).max() > 0.01


def test_processed_maps_are_mixed_as_they_are_and_resampled_to_the_working_shape():
    pure = _bands(6, (80, 80), seed=1)
    cfg = _cfg({"background": "processed", "work_shape": [40, 40]})
    draws = draw_pairs(cfg, 0, 6, 6, square=True)
    out = build_raw_pairs(cfg, draws, pure[draws.pos_a], pure[draws.pos_b], None)
    assert out["C"].shape == out["A"].shape == (6, 40, 40) and out["C"].dtype == np.uint16
    w = draws.weights
    mixed = w[:, 0, None, None] * pure[draws.pos_a] + w[:, 1, None, None] * pure[draws.pos_b]
    binned = mixed.reshape(6, 40, 2, 40, 2).mean(axis=(2, 4))
    lo, hi = binned.min(axis=(1, 2), keepdims=True), binned.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(from_uint16(out["C"]), (binned - lo) / (hi - lo), atol=2e-4)


def test_grain_means_average_out_the_noise_and_keep_the_bands():
    from kdeconv.generate.chunk import grain_means

    clean = _bands(2, seed=5)
    grains = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    rng = np.random.default_rng(6)
    noisy = clean[grains] + rng.normal(0, 0.6, (16, 40, 40)).astype(np.float32)
    noisy = (noisy - noisy.min(axis=(1, 2), keepdims=True)) / np.ptp(noisy, axis=(1, 2), keepdims=True)
    means = grain_means(noisy, grains)
    assert means.shape == noisy.shape and means.dtype == np.float32
    assert (means[:8] == means[0]).all() and (means[8:] == means[8]).all()  # one target per grain
    assert means.min() == 0 and means.max() == 1  # stretched to [0, 1] again

    for k, grain in ((0, 0), (8, 1)):  # 8 patterns: the noise down by ~sqrt(8)
        assert _ncc(means[k], clean[grain]) > 0.75 > _ncc(noisy[k], clean[grain]) + 0.1


def _ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_the_camera_fine_pattern_every_grain_shares_leaves_the_targets():
    from kdeconv.generate.chunk import (
        CAMERA_PATTERN_MIN_GRAINS,
        CAMERA_PATTERN_MIN_SHARE,
        camera_pattern,
        less_camera_pattern,
    )

    rng = np.random.default_rng(7)
    y, x = np.mgrid[:40, :40] / 40 - 0.5
    clean = np.zeros((8, 40, 40), np.float32)
    for grain in clean:  # three bands anywhere on the pattern
        for t, o in zip(rng.uniform(0, np.pi, 3), rng.uniform(-0.3, 0.3, 3)):
            grain += np.exp(-((x * np.cos(t) + y * np.sin(t) - o) / 0.05) ** 2)
    rng = np.random.default_rng(8)
    camera = rng.normal(0, 0.4, (40, 40)).astype(np.float32)  # pixel gain, as strong as a band edge
    camera[5, 7], camera[30, 21] = 3.0, -1.0  # a hot and a dead pixel
    means = clean + camera
    means = (means - means.min(axis=(1, 2), keepdims=True)) / np.ptp(means, axis=(1, 2), keepdims=True)
    assert _ncc(means[0], means[1]) > 0.5  # two grains look alike through the camera
    found, share = camera_pattern(means)
    assert share > CAMERA_PATTERN_MIN_SHARE and _ncc(found, camera) > 0.9
    out = less_camera_pattern(means, found)
    assert out.shape == means.shape and out.min() == 0 and out.max() == 1
    for g in range(8):
        assert _ncc(out[g], clean[g]) > 0.9 and _ncc(means[g], clean[g]) < 0.85
    assert abs(_ncc(out[0], out[1])) < 0.3
    # too few grains to tell the camera from a band
    assert camera_pattern(means[:CAMERA_PATTERN_MIN_GRAINS - 1]) == (None, None)
    found, share = camera_pattern(clean + 0.05 * camera)  # a faint camera pattern stays:
    assert found is None and share < 0.1                  # removing it costs more


def test_given_targets_replace_a_and_b_while_c_mixes_the_raw_patterns():
    cfg = _cfg({"background": "processed"})
    raw = _bands(8, seed=7) * 50
    targets = _bands(8, seed=8)
    targets /= targets.max(axis=(1, 2), keepdims=True)
    draws = draw_pairs(cfg, 0, 6, 8, square=True)
    out = build_raw_pairs(cfg, draws, raw[draws.pos_a], raw[draws.pos_b], None,
                          targets[draws.pos_a], targets[draws.pos_b])
    np.testing.assert_allclose(from_uint16(out["A"]), targets[draws.pos_a], atol=1e-5)
    np.testing.assert_allclose(from_uint16(out["B"]), targets[draws.pos_b], atol=1e-5)
    same = build_raw_pairs(cfg, draws, raw[draws.pos_a], raw[draws.pos_b], None)
    assert np.array_equal(out["C"], same["C"])  # C is the raw mixture either way


def test_targets_need_listed_indices():
    import pytest

    with pytest.raises(Exception, match="targets need indices"):
        _cfg({"background": "processed"}, source={"kind": "map", "path": "m.zarr", "targets": "t.zarr"})
    with pytest.raises(Exception, match="targets need indices"):
        _cfg({"background": "processed"},
             source={"kind": "map", "path": "m.zarr", "indices": [1, 1], "targets": "t.zarr"})


def test_a_windowed_map_is_masked_before_it_is_mixed():
    # a round screen's dark corners: the raw patterns are masked first, so C, A and B are the
    # pairs of the masked patterns, zero outside the circle, flagged masked
    from kdeconv.preprocess import circular_mask

    raw = _bands(8) * 100 + 50
    cfg = _cfg({"background": "raw", "dynamic": True, "mask": "circle"})
    draws = draw_pairs(cfg, 0, 4, 8, square=True)
    out = build_raw_pairs(cfg, draws, raw[draws.pos_a], raw[draws.pos_b], None)
    mask = circular_mask((40, 40))
    masked = raw * mask
    plain = _cfg({"background": "raw", "dynamic": True})
    want = build_raw_pairs(plain, draws, masked[draws.pos_a], masked[draws.pos_b], None)
    assert out["masked"].all()
    for name in ("C", "A", "B"):
        np.testing.assert_array_equal(out[name], want[name])
        assert (out[name][:, ~mask] == 0).all()


def test_a_map_seen_through_a_small_screen_is_cut_to_its_square_before_it_is_mixed():
    # the pairs of the screen's square alone (masked to its circle), at the working shape
    from kdeconv.preprocess import circular_mask

    raw = _bands(8, (48, 48)) * 100 + 50
    cfg = _cfg({"background": "raw", "dynamic": True, "mask": "circle", "screen": [6, 2, 36],
                "work_shape": [40, 40]})
    draws = draw_pairs(cfg, 0, 4, 8, square=True)
    out = build_raw_pairs(cfg, draws, raw[draws.pos_a], raw[draws.pos_b], None)
    square = raw[:, 6:42, 2:38]
    plain = _cfg({"background": "raw", "dynamic": True, "mask": "circle", "work_shape": [40, 40]})
    want = build_raw_pairs(plain, draws, square[draws.pos_a], square[draws.pos_b], None)
    assert out["masked"].all() and out["C"].shape == (4, 40, 40)
    for name in ("C", "A", "B"):
        np.testing.assert_array_equal(out[name], want[name])
        assert (out[name][:, ~circular_mask((40, 40))] == 0).all()


def _recordings(clean: np.ndarray, n: int, rng, gain: float = 3.0, read: float = 2.0) -> np.ndarray:
    """``n`` recordings of the counts ``clean``: shot noise of ``gain`` counts per electron, read noise."""
    return np.array([rng.poisson(clean / gain) * gain + rng.normal(0, read, clean.shape) for _ in range(n)],
                    np.float32)


def test_the_noise_line_is_read_from_the_grains_pure_patterns():
    """Shot noise of 3 counts per electron: the spread about each grain's mean grows as 3·I."""
    from kdeconv.generate.chunk import recording_noise

    rng = np.random.default_rng(0)
    clean = 200 + 400 * _bands(4, seed=2)
    raw = np.concatenate([_recordings(c, 6, rng) for c in clean])
    slope, offset = recording_noise(raw, np.repeat(np.arange(4), 6))
    for level in (250.0, 1200.0):  # within the recorded range: 3·I + 4 (shot and read noise)
        assert abs((slope * level + offset) / (3 * level + 4) - 1) < 0.1
    # one pattern per grain leaves nothing to measure the noise by
    assert recording_noise(raw[::6], np.arange(4)) is None


def test_a_mix_of_two_recordings_is_topped_up_to_the_noise_of_one():
    """A detector records the sum once: a 50/50 mix of two recordings has half its noise variance;
    the top-up restores it, the same numbers for the same pairs on any worker."""
    from kdeconv.generate.chunk import noise_top_up

    rng = np.random.default_rng(1)
    clean_a, clean_b = 300 + 300 * _bands(2, seed=3)
    n = 300
    a, b = _recordings(clean_a, n, rng), _recordings(clean_b, n, rng)
    w = np.full((n, 2), 0.5, np.float32)
    mixed = 0.5 * a + 0.5 * b
    one = _recordings(0.5 * clean_a + 0.5 * clean_b, n, rng)  # the detector's own
    topped = noise_top_up(mixed, a, b, w, (3.0, 4.0), seed=5, start=0)
    assert mixed.var(axis=0).mean() / one.var(axis=0).mean() < 0.55
    assert abs(topped.var(axis=0).mean() / one.var(axis=0).mean() - 1) < 0.05
    assert abs(float((topped - mixed).mean())) < 0.5  # zero-mean: the counts are not moved
    # pairs 100-199 drawn in their own call give the same numbers as in the whole range
    part = noise_top_up(mixed[100:200], a[100:200], b[100:200], w[100:200], (3.0, 4.0), seed=5, start=100)
    np.testing.assert_array_equal(part, topped[100:200])
    # pure pairs get nothing added
    w_pure = np.tile(np.array([[1.0, 0.0]], np.float32), (4, 1))
    np.testing.assert_array_equal(noise_top_up(a[:4], a[:4], b[:4], w_pure, (3.0, 4.0), 5, 0), a[:4])


def test_raw_mix_tops_up_only_with_the_source_noise():
    signal = 500 + 300 * _bands(8, seed=4)
    cfg = _cfg({"background": "processed"})
    noisy = _cfg({"background": "processed"},
                 source={"kind": "map", "path": "unused.zarr", "noise": [3.0, 4.0]})
    draws = draw_pairs(cfg, 0, 8, 8, square=True)
    plain = build_raw_pairs(cfg, draws, signal[draws.pos_a], signal[draws.pos_b], None)
    topped = build_raw_pairs(noisy, draws, signal[draws.pos_a], signal[draws.pos_b], None, start=0)
    again = build_raw_pairs(noisy, draws, signal[draws.pos_a], signal[draws.pos_b], None, start=0)
    np.testing.assert_array_equal(topped["C"], again["C"])
    assert not np.array_equal(topped["C"], plain["C"])
    np.testing.assert_array_equal(topped["A"], plain["A"])  # the targets stay clean
