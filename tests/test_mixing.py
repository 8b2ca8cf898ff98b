"""The two mixing pipelines against their documented formulas, and the uint16 conversion."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from kdeconv.errors import InputError
from kdeconv.mixing import from_uint16, mix_then_normalize, normalize_then_mix, to_uint16
from kdeconv.preprocess import circular_mask


def _pure(n, shape=(40, 40), seed=0):
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=(n,) + shape), (0, 2, 2))
    return (1000 + 400 * x / x.std()).astype(np.float32)  # raw intensities with an offset


def _weights(n, seed=1):
    wa = np.random.default_rng(seed).uniform(0.1, 0.9, n)
    return np.stack([wa, 1 - wa], axis=1).astype(np.float32)


def _stretch(x):
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return (x - lo) / (hi - lo)


def test_uint16_full_range():
    u = to_uint16(np.array([-0.5, 0.0, 0.5, 1.0, 1.5]))
    assert u.dtype == np.uint16
    assert u.tolist() == [0, 0, 32768, 65535, 65535]
    grid = np.arange(0, 65536, 97, dtype=np.uint16)
    assert np.array_equal(to_uint16(from_uint16(grid)), grid)


def test_normalize_then_mix_is_weighted_sum_of_stored_targets():
    a, b, w = _pure(6), _pure(6, seed=5), _weights(6)
    c, an, bn = normalize_then_mix(a, b, w)
    A, B, C = to_uint16(an), to_uint16(bn), to_uint16(c)
    # Documented: C = wA*N(A) + wB*N(B); recomputed from the stored uint16 arrays only.
    expected = w[:, 0, None, None] * (A / 65535.0) + w[:, 1, None, None] * (B / 65535.0)
    diff = np.abs(C.astype(np.int64) - np.rint(expected * 65535).astype(np.int64))
    assert diff.max() <= 1
    # Targets are the min-max normalised pure patterns.
    assert np.abs(A.astype(np.int64) - np.rint(_stretch(a.astype(np.float64)) * 65535)).max() <= 1
    # A 50/50-ish mix is flatter than its constituents: no renormalisation here.
    assert (c.max(axis=(1, 2)) - c.min(axis=(1, 2)) < 1).all()


def test_mix_then_normalize_is_stretched_weighted_sum():
    a, b, w = _pure(6), _pure(6, seed=5), _weights(6)
    c, an, bn = mix_then_normalize(a, b, w)
    A, B, C = to_uint16(an), to_uint16(bn), to_uint16(c)
    m = w[:, 0, None, None] * (A / 65535.0) + w[:, 1, None, None] * (B / 65535.0)
    expected = _stretch(m)
    assert np.abs(C.astype(np.int64) - np.rint(expected * 65535).astype(np.int64)).max() <= 1
    assert C.min() == 0 and (C.max(axis=(1, 2)) == 65535).all()


def test_masked_pairs_zero_outside_and_use_inside_statistics():
    mask = circular_mask((40, 40))
    a, b, w = _pure(4), _pure(4, seed=9), _weights(4)
    a[:, 0, 0] = 1e6  # a hot corner pixel outside the mask
    masked = np.array([True, False, True, False])
    c, an, bn = mix_then_normalize(a, b, w, mask=mask, masked=masked)
    for k in (0, 2):
        assert (c[k][~mask] == 0).all() and (an[k][~mask] == 0).all()
        assert an[k][mask].max() == 1.0 and an[k][mask].min() == 0.0  # corner did not count
    # Unmasked pairs use the whole pattern: the hot corner is the maximum.
    assert an[1][0, 0] == 1.0 and an[1][mask].max() < 0.1


def test_bad_inputs():
    a = _pure(2)
    with pytest.raises(InputError, match="weights"):
        normalize_then_mix(a, a, np.array([[1.2, -0.2], [0.5, 0.5]]))
    with pytest.raises(InputError, match="weights"):
        normalize_then_mix(a, a, np.array([[0.7, 0.7], [0.5, 0.5]]))
    from kdeconv.mixing import mix

    with pytest.raises(InputError, match="unknown pipeline"):
        mix("average", a, a, _weights(2))
