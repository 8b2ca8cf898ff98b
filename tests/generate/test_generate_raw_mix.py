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
