"""Circular mask geometry and detection of pre-masked patterns."""

import numpy as np
import pytest

from kdeconv.errors import InputError
from kdeconv.preprocess import apply_mask, circular_mask, detect_masked, mask_geometry


@pytest.mark.parametrize("size", [7, 8, 60, 61])
def test_mask_centre_and_radius_square(size):
    cy, cx, r = mask_geometry((size, size))
    assert (cy, cx) == ((size - 1) / 2, (size - 1) / 2)
    assert r == size / 2
    m = circular_mask((size, size))
    # Symmetric about the centre: flips leave it unchanged.
    assert np.array_equal(m, m[::-1]) and np.array_equal(m, m[:, ::-1]) and np.array_equal(m, m.T)
    assert not m[0, 0] and not m[-1, -1] and not m[0, -1] and not m[-1, 0]
    # Touches every edge in the middle: one pixel (odd) or the two middle pixels (even).
    mid = [size // 2] if size % 2 else [size // 2 - 1, size // 2]
    for j in mid:
        assert m[0, j] and m[-1, j] and m[j, 0] and m[j, -1]
    # Edge row: exactly the pixels with dx^2 <= r^2 - dy^2.
    dx = np.arange(size) - cx
    assert m[0].sum() == int((dx * dx <= r * r - cy * cy).sum())


def test_mask_known_small_odd_and_even():
    # r = 2.5 around (2, 2): (0, 1) is at sqrt(5) = 2.24 -> inside; corners at 2.83 -> outside.
    expected_5 = np.array([[0, 1, 1, 1, 0],
                           [1, 1, 1, 1, 1],
                           [1, 1, 1, 1, 1],
                           [1, 1, 1, 1, 1],
                           [0, 1, 1, 1, 0]], bool)
    assert np.array_equal(circular_mask((5, 5)), expected_5)
    # 4x4: centre (1.5, 1.5), r = 2: corners at 2.12 are outside, everything else inside.
    m4 = circular_mask((4, 4))
    assert m4.sum() == 12 and not m4[0, 0] and m4[0, 1] and m4[1, 1]


def test_mask_rectangular_uses_short_side():
    cy, cx, r = mask_geometry((60, 80))
    assert (cy, cx, r) == (29.5, 39.5, 30.0)
    m = circular_mask((60, 80))
    assert not m[:, :10].any() and not m[:, -10:].any()
    assert m[0, 39] and m[-1, 40] and m[30, 10] and m[30, 69]


def test_mask_radius_larger_than_pattern_is_input_error():
    with pytest.raises(InputError, match="larger than the pattern"):
        circular_mask((32, 32), radius=17)
    assert circular_mask((32, 32), radius=10).sum() < circular_mask((32, 32)).sum()


def test_detect_masked_on_pre_masked_and_plain_patterns():
    rng = np.random.default_rng(1)
    mask = circular_mask((40, 40))
    plain = rng.uniform(100, 1000, (3, 40, 40)).astype(np.uint16)
    plain[0, 0, 0] = 0  # one dark corner pixel does not make a pattern masked
    masked = apply_mask(plain, mask)
    assert detect_masked(masked, mask).tolist() == [True, True, True]
    assert detect_masked(plain, mask).tolist() == [False, False, False]
    assert detect_masked(masked[0], mask) is True
    # Float pattern with tiny noise outside the circle still counts as masked.
    f = masked.astype(np.float32) + np.where(mask, 0, rng.uniform(0, 2, (40, 40)))
    assert detect_masked(f, mask).all()
    # An all-zero pattern is not a masked pattern (nothing inside).
    assert not detect_masked(np.zeros((40, 40)), mask)
