"""Smart normalisation, crop and denoise."""

import numpy as np
import pytest

from kdeconv.errors import InputError
from kdeconv.preprocess import circular_mask, crop, denoise, normalize


def test_minmax_known_values():
    p = np.array([[[2, 4], [6, 10]]], dtype=np.uint16)
    out = normalize(p)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [[0, 0.25], [0.5, 1.0]])


def test_smart_ignores_masked_zeros():
    mask = circular_mask((32, 32))
    rng = np.random.default_rng(0)
    p = rng.uniform(1000, 2000, (2, 32, 32)).astype(np.float32)
    p[:, ~mask] = 0
    smart = normalize(p, mask=mask, smart=True)
    plain = normalize(p, mask=mask, smart=False)
    inside = p[:, mask]
    expected = (inside - inside.min(axis=1, keepdims=True)) / np.ptp(inside, axis=1, keepdims=True)
    np.testing.assert_allclose(smart[:, mask], expected, atol=1e-6)
    assert smart[:, mask].min() == 0 and smart[:, mask].max() == 1
    assert (smart[:, ~mask] == 0).all()  # zeros lie below the inside minimum: clipped to 0
    # Global normalisation lets the zeros set the black level: inside values are squeezed high.
    assert plain[:, mask].min() > 0.45


def test_percentile_and_flat_pattern():
    p = np.arange(1000, dtype=np.float32).reshape(1, 25, 40)
    out = normalize(p, method="percentile", percentiles=(10, 90))
    lo, hi = np.percentile(p, [10, 90])
    np.testing.assert_allclose(out[0, 12, 20], np.clip((p[0, 12, 20] - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert out.min() == 0 and out.max() == 1 and (out == 0).mean() > 0.09
    flat = normalize(np.full((2, 8, 8), 7.0))
    assert (flat == 0).all()
    with pytest.raises(InputError, match="unknown normalisation"):
        normalize(p, method="zscore")


def test_crop_and_denoise():
    p = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    c = crop(p, (1, 2, 3, 4))
    assert c.shape == (2, 7, 5) and c[0, 0, 0] == p[0, 1, 3]
    with pytest.raises(InputError):
        crop(p, (5, 5, 0, 0))
    noisy = np.random.default_rng(0).normal(0, 1, (1, 64, 64)).astype(np.float32)
    assert denoise(noisy, 1.0).std() < 0.5 * noisy.std()
    np.testing.assert_array_equal(denoise(noisy, 0), noisy)
