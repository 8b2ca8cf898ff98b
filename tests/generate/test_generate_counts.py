"""Recorded counts: Poisson noise plus read noise, drawn in its normal limit at high counts."""

import numpy as np

from kdeconv.generate.augment import NORMAL_LIMIT_COUNTS, background_field, recorded_counts


def test_counts_have_poisson_mean_and_variance_plus_read_noise():
    rng = np.random.default_rng(0)
    for expected, read in ((5.0, 0.0), (20.0, 3.0), (400.0, 0.0), (2500.0, 5.0)):
        counts = recorded_counts(np.full((200, 200), expected, np.float32), read, rng)
        assert counts.dtype == np.float32
        assert abs(counts.mean() - expected) < 4 * np.sqrt((expected + read**2) / counts.size)
        assert abs(counts.var() / (expected + read**2) - 1) < 0.03  # 40,000 draws: ~0.7% std


def test_low_counts_are_exact_poisson_integers():
    expected = np.array([[0.5, 3.0, NORMAL_LIMIT_COUNTS - 1, NORMAL_LIMIT_COUNTS + 100]], np.float32)
    counts = recorded_counts(np.repeat(expected, 5000, axis=0), 0.0, np.random.default_rng(1))
    low = counts[:, :3]
    assert (low == np.rint(low)).all() and (low >= 0).all()  # Poisson: whole counts, never negative
    assert np.mean(counts[:, 0] == 0) > 0.55  # P(K = 0) = exp(-0.5) = 0.61
    assert (counts[:, 3] != np.rint(counts[:, 3])).any()  # the normal limit above


def test_exact_counts_draw_poisson_everywhere_and_are_keyed():
    expected = np.full((64, 64), 900.0, np.float32)
    a = recorded_counts(expected, 0.0, np.random.default_rng([3, 7]), exact=True)
    b = recorded_counts(expected, 0.0, np.random.default_rng([3, 7]), exact=True)
    assert (a == np.rint(a)).all() and np.array_equal(a, b)
    c = recorded_counts(expected, 2.0, np.random.default_rng([3, 7]))
    assert np.array_equal(c, recorded_counts(expected, 2.0, np.random.default_rng([3, 7])))


def test_box_muller_draws_are_standard_normal_and_keyed():
    from scipy import stats

    from kdeconv.generate.augment import standard_normal_f32

    z = standard_normal_f32(np.random.default_rng(5), (301, 333))  # odd size: half a pair unused
    assert z.shape == (301, 333) and z.dtype == np.float32 and np.isfinite(z).all()
    flat = z.ravel().astype(np.float64)
    assert abs(flat.mean()) < 4 / np.sqrt(flat.size) and abs(flat.var() - 1) < 0.02
    assert abs(stats.skew(flat)) < 0.03 and abs(stats.kurtosis(flat)) < 0.06
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    assert np.array_equal(z, standard_normal_f32(np.random.default_rng(5), (301, 333)))


def test_gaussian_blur_is_scipys_nearest_filter():
    from scipy.ndimage import gaussian_filter

    from kdeconv.generate.augment import gaussian_blur

    pattern = np.random.default_rng(2).random((40, 52), dtype=np.float32)
    for sigma in (0.05, 0.4, 0.99, 2.5):
        assert np.array_equal(gaussian_blur(pattern, sigma), gaussian_filter(pattern, sigma, mode="nearest"))


def test_a_wider_detector_sees_more_of_the_same_background():
    # the background's width is the camera distance, in detector heights: a 4:3 detector's
    # centre square holds the square detector's background, and its side columns fall off further
    square = background_field((120, 120), 0.8, 0.05, 0.0)
    wide = background_field((120, 160), 0.8, 0.05, 0.0)
    np.testing.assert_allclose(wide[:, 20:140], square, rtol=1e-6)
    assert wide[60, 0] < square[60, 0]
