"""Vectorised keyed draws are bit for bit the per-pair ``default_rng([seed, i, stream])`` ones."""

import numpy as np
import pytest

from kdeconv.config import validate_config
from kdeconv.config.generate import GenerateConfig
from kdeconv.generate.augment import AUGMENT_COLUMNS, COL
from kdeconv.generate.chunk import (
    N_UNIFORMS,
    STREAM_PURE,
    _cross_share,
    _partner,
    draw_pairs,
    pair_rng,
    pool_labels,
    pure_geometry,
    window_for_group,
)
from kdeconv.generate.keyed_rng import keyed_uniforms


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 5, 2**80 + 1])
@pytest.mark.parametrize("stream", [0, 1, 4])
def test_keyed_uniforms_are_numpys_streams(seed, stream):
    keys = np.array([0, 1, 2, 17, 1000, 123457, 2**31 - 1, 2**32 - 1])
    want = np.stack([np.random.default_rng([seed, int(k), stream]).random(25) for k in keys])
    np.testing.assert_array_equal(keyed_uniforms(seed, keys, stream, 25), want)
    with pytest.raises(ValueError):
        keyed_uniforms(seed, [2**32], stream, 1)


def _reference_draws(cfg, start, stop, pool_size, square, labels=None):
    """The per-pair draws as generate made them before they were vectorised."""
    def uniform(u, lo_hi):
        return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])

    def log_uniform(u, lo_hi):
        lo, hi = lo_hi
        return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))

    n = stop - start
    pos_a, pos_b = np.empty(n, np.int64), np.empty(n, np.int64)
    weights, masked = np.empty((n, 2), np.float32), np.empty(n, bool)
    augment = np.zeros((n, len(AUGMENT_COLUMNS)), np.float32)
    w, aug, cross = cfg.weights, cfg.augment, _cross_share(cfg)
    for k, i in enumerate(range(start, stop)):
        u = pair_rng(cfg.seed, i).random(N_UNIFORMS)
        w0, size = window_for_group(cfg.seed, i // cfg.group_size, pool_size, cfg.window)
        pa = int(u[0] * size)
        pb = _partner(pa, size, u[1], u[24], None if labels is None else labels[w0:w0 + size], cross)
        wa = uniform(u[3], (w.pure_low, 1.0)) if u[2] < w.pure_fraction else uniform(u[3], (w.low, w.high))
        if (wa < 0.5) if w.dominant_first else (u[4] < 0.5):
            pa, pb, wa = pb, pa, 1.0 - wa
        pos_a[k], pos_b[k] = w0 + pa, w0 + pb
        weights[k] = (wa, 1.0 - wa)
        masked[k] = u[5] < cfg.mask.fraction
        row = augment[k]
        if aug.flips:
            row[COL["rot90"]] = int(u[6] * 4) if square else 2 * int(u[6] * 2)
            row[COL["flip"]] = float(u[7] < 0.5)
        row[COL["gamma"]] = 1.0
        if aug.realism:
            row[COL["realism"]] = 1.0
            row[COL["dose"]] = log_uniform(u[8], aug.dose)
            row[COL["read_noise"]] = uniform(u[9], aug.read_noise)
            row[COL["blur_sigma"]] = uniform(u[10], aug.blur_sigma)
            row[COL["gamma"]] = log_uniform(u[11], aug.gamma)
            row[COL["signal_fraction"]] = uniform(u[12], aug.signal_fraction)
            row[COL["background_width"]] = uniform(u[13], aug.background_width)
            row[COL["background_dy"]] = (2 * u[14] - 1) * aug.background_shift
            row[COL["background_dx"]] = (2 * u[15] - 1) * aug.background_shift
            if u[16] < aug.dynamic_background:
                row[COL["dynamic_std"]] = uniform(u[17], aug.dynamic_std)
            if u[18] < aug.gain:
                row[COL["gain"]] = uniform(u[19], aug.gain_std)
            if u[20] < aug.defects:
                row[COL["defect_fraction"]] = uniform(u[21], aug.defect_fraction)
            row[COL["bits"]] = 8 if u[22] < aug.quantize_8bit else 16
            row[COL["subtract_background"]] = float(u[23] < aug.subtract_background)
    weights[:, 1] = np.float32(1.0) - weights[:, 0]
    return pos_a, pos_b, weights, masked, augment


def _cfg(**over):
    data = {"seed": 11, "n": 3000, "source": {"kind": "simulate", "n_pure": 400, "shape": [32, 32],
                                             "energy": [10, 20]},
            "weights": {"pure_fraction": 0.2}, "mask": {"fraction": 0.4},
            "augment": {"realism": True, "flips": True, "gamma": [0.8, 1.25], "dynamic_background": 0.5,
                        "gain": 0.5, "defects": 0.5, "quantize_8bit": 0.3, "subtract_background": 0.4},
            "group_size": 64, "window": 150}
    data.update(over)
    return validate_config(GenerateConfig, data)


@pytest.mark.parametrize("over,square,labelled", [
    ({}, True, False),
    ({}, False, False),
    ({"augment": {"realism": False, "flips": False}, "weights": {"dominant_first": False}}, True, False),
    ({"seed": 2**40 + 3, "window": 5000}, True, False),
    ({"source": {"kind": "simulate", "n_pure": 400, "shape": [32, 32], "phases": [
        {"master": {"kind": "nickel"}, "weight": 1}, {"master": {"kind": "nickel"}, "weight": 2}],
        "cross_phase": 0.7}}, True, True),
])
def test_vectorised_draws_equal_the_per_pair_draws(over, square, labelled):
    cfg = _cfg(**over)
    labels = pool_labels(cfg, 400) if labelled else None
    if labelled:
        assert labels is not None
    for start, stop in ((0, 700), (1234, 1900), (2999, 3000)):
        got = draw_pairs(cfg, start, stop, 400, square, labels)
        want = _reference_draws(cfg, start, stop, 400, square, labels)
        for name, ref in zip(("pos_a", "pos_b", "weights", "masked", "augment"), want):
            np.testing.assert_array_equal(getattr(got, name), ref, err_msg=name)


def test_pure_geometry_equals_the_per_pattern_draws():
    from kdeconv.simulate import random_quaternions

    cfg = _cfg()
    src = cfg.source
    quats, pcs, tilts, energies = pure_geometry(cfg, 5, 905)
    for k, j in enumerate(range(5, 905)):
        rng = np.random.default_rng([cfg.seed, j, STREAM_PURE])
        np.testing.assert_array_equal(quats[k], random_quaternions(rng, 1)[0])
        u = rng.random(6)
        def lo_hi(r, draw):
            return r[0] + draw * (r[1] - r[0])

        for value, draw, r in zip(pcs[k], u[:3], (src.pc_x, src.pc_y, src.pc_z)):
            assert value == lo_hi(r, draw)
        for value, draw, r in zip(tilts[k], u[3:5], (src.camera_tilt, src.sample_tilt)):
            assert value == lo_hi(r, draw)
        assert energies[k] == lo_hi(src.energy, u[5])
