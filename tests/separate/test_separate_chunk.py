"""The per-chunk kernel on small arrays, with a stub separator (known answers)."""

import numpy as np
import pytest

from kdeconv.preprocess.background import remove_dynamic_background
from kdeconv.separate.chunk import from_dtype, preprocess_patterns, separate_patterns, to_dtype

NO_BG = {"static": "none", "dynamic": False}
BG = {"static": "map_mean", "static_operation": "subtract", "dynamic": True,
      "dynamic_operation": "subtract", "dynamic_std": None}


class Mirror:
    """A = input, B = mirror, wB from the mean; optionally returns B-dominant weights."""

    def __init__(self, flip_weights=False):
        self.flip_weights = flip_weights
        self.batches = []

    def separate(self, patterns):
        self.batches.append(len(patterns))
        wb = 0.5 * patterns.mean(axis=(1, 2))
        w = np.stack([1 - wb, wb], 1).astype(np.float32)
        return patterns.copy(), patterns[:, :, ::-1].copy(), (w[:, ::-1] if self.flip_weights else w)


def test_to_dtype_uses_full_range_and_rounds():
    unit = np.array([0.0, 0.5, 1.0, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(to_dtype(unit, np.uint16), [0, 32768, 65535, 65535, 0])
    np.testing.assert_array_equal(to_dtype(unit, np.uint8), [0, 128, 255, 255, 0])
    assert to_dtype(unit, np.float32).dtype == np.float32
    np.testing.assert_allclose(from_dtype(to_dtype(unit[:3], np.uint16)), unit[:3], atol=1 / 65535)


def test_kernel_shapes_dtypes_and_known_answer():
    rng = np.random.default_rng(1)
    block = rng.integers(0, 4000, size=(2, 3, 10, 12), dtype=np.uint16)
    sep = Mirror()
    a, b, w = separate_patterns(block, sep, batch_size=4, background=NO_BG)
    assert a.shape == b.shape == block.shape and a.dtype == b.dtype == np.uint16
    assert w.shape == (2, 3, 2) and w.dtype == np.float32
    assert sep.batches == [4, 2]
    unit = preprocess_patterns(block.reshape(6, 10, 12), NO_BG).reshape(block.shape)
    np.testing.assert_array_equal(a, to_dtype(unit, np.uint16))
    np.testing.assert_array_equal(b, to_dtype(unit[..., ::-1], np.uint16))
    np.testing.assert_allclose(w.sum(-1), 1, atol=1e-6)


def test_batch_size_does_not_change_results():
    rng = np.random.default_rng(2)
    block = rng.integers(0, 255, size=(7, 16, 16), dtype=np.uint8)
    one = separate_patterns(block, Mirror(), batch_size=1, background=BG, static_bg=block.mean(0))
    many = separate_patterns(block, Mirror(), batch_size=64, background=BG, static_bg=block.mean(0))
    for x, y in zip(one, many):
        np.testing.assert_array_equal(x, y)


def test_a_is_made_dominant():
    rng = np.random.default_rng(3)
    block = rng.random((5, 8, 8), dtype=np.float32)
    a, b, w = separate_patterns(block, Mirror(flip_weights=True), batch_size=2, background=NO_BG)
    assert (w[:, 0] >= w[:, 1]).all()
    unit = preprocess_patterns(block, NO_BG)
    np.testing.assert_allclose(a, unit[:, :, ::-1])  # the stub's "B" became A
    np.testing.assert_allclose(b, unit)


def test_preprocess_matches_background_kernels():
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 60000, size=(3, 20, 20), dtype=np.uint16)
    static = raw.mean(0)
    got = preprocess_patterns(raw, BG, static_bg=static)
    step1 = raw.astype(np.float32) - static.astype(np.float32)
    expected = remove_dynamic_background(step1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.min() >= 0 and got.max() <= 1
    with pytest.raises(ValueError, match="needs the background"):
        preprocess_patterns(raw, BG)


def test_wrong_separator_output_is_caught():
    class Bad:
        def separate(self, patterns):
            return patterns[:, :4], patterns, np.zeros((len(patterns), 2), np.float32)

    with pytest.raises(RuntimeError, match="separator returned shapes"):
        separate_patterns(np.arange(128, dtype=np.uint8).reshape(2, 8, 8), Bad(), batch_size=2,
                          background=NO_BG)


def test_masked_patterns_stay_masked_after_background_removal():
    from kdeconv.preprocess import circular_mask

    rng = np.random.default_rng(5)
    mask = circular_mask((24, 24))
    raw = (rng.integers(500, 4000, size=(4, 24, 24)) * mask).astype(np.uint16)
    raw[3] = rng.integers(500, 4000, size=(24, 24))  # one unmasked pattern
    out = preprocess_patterns(raw, BG, static_bg=raw.mean(0))
    assert (out[:3][:, ~mask] == 0).all()
    assert (out[3][~mask] != 0).any()


def test_nan_patterns_are_an_input_error():
    from kdeconv.errors import InputError

    block = np.full((2, 10, 12), 0.5, np.float32)
    block[1, 4, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        separate_patterns(block, Mirror(), batch_size=4, background=NO_BG)


def test_batch_size_default_is_the_devices_own():
    from kdeconv.separate.chunk import effective_batch_size

    # a CPU's fastest batch holds ~2**20 bytes of input at its precision; a GPU's starts at 256
    assert effective_batch_size(None, (120, 120), "cpu") == 2**18 // (120 * 120) == 18
    assert effective_batch_size(None, (120, 120), "cpu", "bf16") == 36
    assert effective_batch_size(None, (240, 240), "cpu") == 4
    assert effective_batch_size(None, (240, 240), "cpu", "bf16") == 9
    assert effective_batch_size(None, (1024, 1024), "cpu") == 1
    assert effective_batch_size(None, (120, 120), "cuda") == 256
    # an explicit batch is kept, bounded only by memory
    assert effective_batch_size(64, (120, 120), "cpu") == 64
    assert effective_batch_size(64, (2048, 2048), "cuda") == 4
