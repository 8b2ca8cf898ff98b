"""Background removal on circular-masked raw patterns: the blurs see the detector's background
continued past the mask, not its zeros."""

import numpy as np
import pytest
from test_background_decision import _raw_map as band_patterns

from kdeconv.preprocess import circular_mask
from kdeconv.preprocess.background import (
    fill_outside_mask,
    known_region,
    static_background_from_mean,
)
from kdeconv.separate.chunk import preprocess_patterns

RAW = {"mode": "raw", "static": "map_mean", "static_operation": "subtract", "dynamic": True,
       "dynamic_operation": "subtract"}


def _raw_map(n=16, size=120, seed=0):
    """Band patterns on a bright-centre detector background, Poisson counts."""
    return band_patterns(n=n, size=size, signal=0.3, seed=seed)


def _ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_fill_keeps_the_inside_and_continues_a_constant():
    stack = np.full((2, 40, 40), 7.0, np.float32) * circular_mask((40, 40))
    filled = fill_outside_mask(stack)
    np.testing.assert_allclose(filled, 7.0, rtol=1e-5)
    rng = np.random.default_rng(1)
    noisy = rng.uniform(1, 2, (3, 40, 40)).astype(np.float32) * circular_mask((40, 40))
    inside = known_region((40, 40))
    np.testing.assert_array_equal(fill_outside_mask(noisy)[:, inside], noisy[:, inside])
    assert np.isfinite(fill_outside_mask(noisy)).all()


def test_masked_raw_patterns_are_corrected_as_their_unmasked_originals():
    raw = _raw_map()
    masked = raw * circular_mask(raw.shape[-2:])
    want = preprocess_patterns(raw, RAW, static_background_from_mean(raw.mean(0), "auto"))
    got = preprocess_patterns(masked, RAW, static_background_from_mean(masked.mean(0), "auto"))
    inside = known_region(raw.shape[-2:])
    # without the fill the zeros darkened the rim's background: median NCC 0.59, a bright ring
    assert np.median([_ncc(w[inside], g[inside]) for w, g in zip(want, got)]) >= 0.97
    radius = np.hypot(*(np.mgrid[:120, :120] - 59.5)) / 60
    rim, centre = got[:, inside & (radius > 0.85)].mean(), got[:, radius < 0.5].mean()
    assert rim < 1.1 * centre
    assert (got[:, ~circular_mask(raw.shape[-2:])] == 0).all()


@pytest.mark.parametrize("size", [60, 120])
def test_the_static_background_of_a_masked_map_is_the_unmasked_one_inside(size):
    raw = _raw_map(n=8, size=size)
    masked = raw * circular_mask((size, size))
    want = static_background_from_mean(raw.mean(0), "auto")
    got = static_background_from_mean(masked.mean(0), "auto")
    inside = known_region((size, size))
    # within 0.1 everywhere inside; the mask's zeros blurred in made the rim's background 0.4 low
    assert np.abs(got[inside] / want[inside] - 1).max() < 0.1


def test_the_baselines_correct_masked_patterns_as_separate_does():
    from kdeconv.evaluate.baselines import background_corrected

    raw = _raw_map(n=6)
    mask = circular_mask(raw.shape[-2:])
    want, got = background_corrected(raw), background_corrected(raw * mask)
    inside = known_region(raw.shape[-2:])
    assert np.median([_ncc(w[inside], g[inside]) for w, g in zip(want, got)]) >= 0.97
    assert (got[:, ~mask] == 0).all()
