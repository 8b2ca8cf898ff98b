"""The torch preprocessing equals the numpy kernels on the CPU (float32, within 1e-5)."""

import numpy as np
import pytest
import torch

from kdeconv.model.inputs import DEFAULT_NORMALIZATION, check_normalization, prepare_inputs
from kdeconv.preprocess import circular_mask, detect_masked
from kdeconv.preprocess import torch_kernels as tk
from kdeconv.preprocess.background import dynamic_background, static_background_from_mean
from kdeconv.separate.chunk import blank_frames, preprocess_patterns, to_dtype

RAW = {"mode": "raw", "static": "map_mean", "static_operation": "subtract", "dynamic": True,
       "dynamic_operation": "subtract", "dynamic_std": None}
PROCESSED = {**RAW, "mode": "processed"}
TOL = 1e-5


def raw_patterns(n, shape, seed=0, masked_rows=()):
    """Detector-like uint16 patterns: bright centre, a few bands, Poisson noise; some masked."""
    rng = np.random.default_rng(seed)
    sy, sx = shape
    y, x = np.mgrid[:sy, :sx] / max(shape)
    centre = np.exp(-((y - 0.45) ** 2 + (x - 0.5) ** 2) / 0.2)
    out = np.empty((n, sy, sx), np.uint16)
    for k in range(n):
        bands = sum(np.exp(-(((x - 0.5) * np.cos(a) + (y - 0.5) * np.sin(a) - d) / 0.03) ** 2)
                    for a, d in zip(rng.uniform(0, np.pi, 4), rng.uniform(-0.3, 0.3, 4)))
        out[k] = rng.poisson(3000 * centre * (0.7 + 0.3 * bands / 4) + 200)
    mask = circular_mask(shape)
    for k in masked_rows:
        out[k] *= mask
    return out


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("shape,std", [((40, 40), None), ((33, 47), None), ((48, 36), 3.0),
                                       ((60, 60), 1.5)])
def test_dynamic_background_is_the_padded_fft_filter(shape, std):
    x = raw_patterns(3, shape, seed=1).astype(np.float32) / 4000
    want = dynamic_background(x, std=std)
    got = tk.dynamic_background(t(x), std=std).numpy()
    np.testing.assert_allclose(got, want, atol=TOL * float(np.abs(want).max()))


@pytest.mark.parametrize("background", [RAW, PROCESSED, {**RAW, "static_operation": "divide",
                                                          "dynamic_operation": "divide"},
                                        {**RAW, "dynamic": False}, {**RAW, "static": "none"},
                                        {**RAW, "dynamic_std": 4.0}])
@pytest.mark.parametrize("shape,work", [((40, 40), None), ((64, 48), (32, 24)), ((30, 30), (45, 45))])
@pytest.mark.parametrize("masked_rows", [(), (0, 2, 4)])
def test_preprocess_equals_numpy(background, shape, work, masked_rows):
    raw = raw_patterns(6, shape, seed=2, masked_rows=masked_rows)
    work = work or shape
    static = static_background_from_mean(raw.mean(0, dtype=np.float64), "auto")
    native = detect_masked(raw, circular_mask(shape))
    assert native.sum() == len(masked_rows)
    want = preprocess_patterns(raw, background, static, work, native)
    from kdeconv.preprocess.resample import resample

    static_work = t(resample(static, work))
    got = tk.preprocess_patterns(t(raw).float(), background, static_work, work, t(native)).numpy()
    assert got.shape == want.shape == (6,) + tuple(work)
    # a masked row's fill divides by its blurred known region (down to 0.02), which magnifies
    # the two blurs' float32 rounding
    np.testing.assert_allclose(got, want, atol=4 * TOL if masked_rows else TOL, rtol=0)
    if masked_rows:
        outside = ~circular_mask(work)
        assert (got[list(masked_rows)][:, outside] == 0).all()


@pytest.mark.parametrize("spec", [DEFAULT_NORMALIZATION, {"method": "minmax", "mask": "auto"},
                                  {"method": "percentile", "percentiles": [2, 98], "mask": "none"},
                                  # ranks far from both ends: a full sort instead of topk
                                  {"method": "percentile", "percentiles": [30, 70], "mask": "auto"}])
@pytest.mark.parametrize("shape", [(40, 40), (33, 41)])
def test_model_inputs_equal_numpy(spec, shape):
    spec = check_normalization(spec)
    raw = raw_patterns(8, shape, seed=3, masked_rows=(1, 5))
    stack = preprocess_patterns(raw, RAW, raw.mean(0), None, detect_masked(raw, circular_mask(shape)))
    want, want_masked = prepare_inputs(stack, spec)
    got, got_masked = tk.prepare_inputs(t(stack), spec)
    np.testing.assert_array_equal(got_masked.numpy(), want_masked)
    np.testing.assert_allclose(got.numpy(), want, atol=TOL, rtol=0)
    if spec["mask"] == "auto":
        assert want_masked[[1, 5]].all() and want_masked.sum() == 2


def test_masks_blank_frames_and_output_dtypes():
    raw = raw_patterns(5, (24, 24), seed=4, masked_rows=(1,))
    raw[3] = 77  # a dropped frame
    np.testing.assert_array_equal(tk.blank_frames(t(raw).float()).numpy(), blank_frames(raw))
    mask = circular_mask((24, 24))
    np.testing.assert_array_equal(tk.detect_masked(t(raw).float(), unsigned=True).numpy(),
                                  detect_masked(raw, mask))
    signed = raw.astype(np.float32) - 1000
    np.testing.assert_array_equal(tk.detect_masked(t(signed)).numpy(), detect_masked(signed, mask))
    unit = np.random.default_rng(5).uniform(-0.1, 1.1, (4, 9, 9)).astype(np.float32)
    unit[0, 0, :3] = [0.5, 1.5 / 65535, 2.5 / 65535]  # halves round to even, as np.rint
    for dtype in (np.uint16, np.uint8, np.float32):
        got = tk.to_dtype(t(unit), dtype).numpy()
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, to_dtype(unit, dtype))
    np.testing.assert_array_equal(tk.to_dtype(t(unit), np.uint16, carrier=torch.int32).numpy(),
                                  to_dtype(unit, np.uint16))
    # a signed carrier of the same size: the host views its bits as the unsigned dtype
    from kdeconv.separate.device import from_transfer

    carried = tk.to_dtype(t(unit), np.uint16, carrier=torch.int16)
    assert carried.dtype == torch.int16
    np.testing.assert_array_equal(from_transfer(carried, np.dtype(np.uint16)), to_dtype(unit, np.uint16))
