"""Background kernels against kikuchipy's EBSD.remove_static/dynamic_background (the oracle)."""

import numpy as np
import pytest

from kdeconv.preprocess.background import (
    dynamic_background,
    remove_dynamic_background,
    remove_static_background,
    rescale_per_pattern,
)

kp = pytest.importorskip("kikuchipy")


@pytest.fixture(scope="module")
def ni_small():
    return kp.data.nickel_ebsd_small()  # 3x3 real Ni patterns, 60x60 uint8, with a static background


@pytest.mark.parametrize("operation", ["subtract", "divide"])
def test_static_matches_kikuchipy(ni_small, operation):
    expected = ni_small.remove_static_background(operation=operation, inplace=False).data
    got = remove_static_background(ni_small.data, ni_small.static_background, operation=operation,
                                   dtype_out=np.uint8, out_range=None)
    assert got.shape == expected.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("operation", ["subtract", "divide"])
@pytest.mark.parametrize("std", [None, 3])
def test_dynamic_matches_kikuchipy(ni_small, operation, std):
    expected = ni_small.remove_dynamic_background(operation=operation, std=std, inplace=False).data
    got = remove_dynamic_background(ni_small.data, operation=operation, std=std,
                                    dtype_out=np.uint8, out_range=None)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_dynamic_on_uint16_and_odd_shape_matches_kikuchipy():
    rng = np.random.default_rng(0)
    data = rng.integers(100, 60000, size=(2, 3, 37, 50), dtype=np.uint16)
    s = kp.signals.EBSD(data)
    expected = s.remove_dynamic_background(inplace=False).data
    got = remove_dynamic_background(data, dtype_out=np.uint16, out_range=None)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    blurred = dynamic_background(data.astype(np.float32))
    ref = kp.pattern.get_dynamic_background(data[1, 2].astype(np.float32))
    np.testing.assert_allclose(blurred[1, 2], ref, rtol=1e-4, atol=1e-2)


def test_float_output_is_unit_range_per_pattern(ni_small):
    out = remove_dynamic_background(remove_static_background(ni_small.data, ni_small.static_background))
    assert out.dtype == np.float32 and out.shape == (3, 3, 60, 60)
    flat = out.reshape(9, -1)
    np.testing.assert_allclose(flat.min(1), 0, atol=1e-6)
    np.testing.assert_allclose(flat.max(1), 1, atol=1e-6)


def test_flat_pattern_does_not_divide_by_zero():
    stack = np.full((2, 4, 4), 7, np.float32)
    out = rescale_per_pattern(stack, 0.0, 1.0)
    assert np.isfinite(out).all() and (out == 0).all()


def test_static_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        remove_static_background(np.zeros((2, 5, 5)), np.zeros((4, 4)))


def test_the_static_background_keeps_dark_fixed_pattern_defects_so_they_are_subtracted():
    from kdeconv.preprocess.background import static_background_from_mean

    y, x = np.mgrid[:60, :60] / 60.0
    smooth = 1000 * np.exp(-((y - 0.5) ** 2 + (x - 0.5) ** 2) / 0.3)
    rng = np.random.default_rng(0)
    mean = smooth * (1 + 0.01 * rng.standard_normal(smooth.shape))
    dust = [(10, 20), (30, 41), (45, 12)]
    for yy, xx in dust:
        mean[yy, xx] *= 0.6
    mean[1, 57] = mean[57, 2] = 0.0  # dead pixels near the rim
    background = static_background_from_mean(mean, "auto")
    for yy, xx in dust + [(1, 57), (57, 2)]:
        assert background[yy, xx] == pytest.approx(mean[yy, xx], rel=1e-5)
    # elsewhere it is the smooth (blurred) mean: no speckle of the mean printed into patterns
    elsewhere = np.ones(mean.shape, bool)
    for yy, xx in dust:
        elsewhere[yy, xx] = False
    elsewhere[1, 57] = elsewhere[57, 2] = False
    mean[20, 20] *= 1.5  # bright: a zone axis as likely as a hot pixel, so left to the blur
    assert static_background_from_mean(mean, "auto")[20, 20] < 0.8 * mean[20, 20]
    blurred_only = static_background_from_mean(mean, "auto", keep_defects=False)
    assert np.abs(blurred_only[10, 20] - mean[10, 20]) > 100
