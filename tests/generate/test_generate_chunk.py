"""Per-chunk kernels of generate: keyed random draws and C reproducible from what is stored."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from kdeconv.config import validate_config
from kdeconv.config.generate import GenerateConfig
from kdeconv.generate.augment import COL, degrade_one, geometric
from kdeconv.generate.chunk import build_pairs, draw_pairs, noise_rng, window_for_group
from kdeconv.mixing import combine, from_uint16
from kdeconv.preprocess import apply_mask, circular_mask


def _cfg(**over):
    data = {"seed": 7, "n": 64, "source": {"kind": "simulate", "n_pure": 50, "shape": [32, 32]},
            "weights": {"pure_fraction": 0.2}, "mask": {"fraction": 0.5},
            "augment": {"realism": True, "flips": True, "gamma": [0.8, 1.25]},
            "group_size": 16, "window": 20}
    data.update(over)
    return validate_config(GenerateConfig, data)


def _pure(n, shape=(32, 32), seed=0):
    x = gaussian_filter(np.random.default_rng(seed).normal(size=(n,) + shape), (0, 1.5, 1.5))
    return (500 + 200 * x / x.std()).astype(np.float32)


def _build(cfg, start, stop, pool):
    draws = draw_pairs(cfg, start, stop, len(pool), square=True)
    mask = circular_mask(pool.shape[1:], cfg.mask.radius)
    return draws, build_pairs(cfg, start, draws, pool[draws.pos_a], pool[draws.pos_b], mask)


def test_draws_do_not_depend_on_how_the_range_is_split():
    cfg = _cfg()
    whole = draw_pairs(cfg, 0, 64, 50, square=True)
    parts = [draw_pairs(cfg, s, e, 50, square=True) for s, e in ((0, 5), (5, 33), (33, 64))]
    for name in ("pos_a", "pos_b", "weights", "masked", "augment"):
        assert np.array_equal(getattr(whole, name), np.concatenate([getattr(p, name) for p in parts]))
    assert not np.array_equal(whole.weights, draw_pairs(_cfg(seed=8), 0, 64, 50, True).weights)


@pytest.mark.parametrize("realism", [False, True])
def test_pairs_do_not_depend_on_the_mix_block(monkeypatch, realism):
    import kdeconv.generate.chunk as chunk

    cfg = _cfg(augment={"realism": realism, "flips": True})
    pool = _pure(50)
    _, whole = _build(cfg, 3, 64, pool)
    monkeypatch.setattr(chunk, "BLOCK_PIXELS", 5 * 32 * 32)  # blocks of 5 pairs, the last short
    _, blocked = _build(cfg, 3, 64, pool)
    for name in ("C", "A", "B", "masked"):
        assert np.array_equal(whole[name], blocked[name]), name


def test_draw_ranges_and_windows():
    cfg = _cfg()
    d = draw_pairs(cfg, 0, 64, 50, square=True)
    w = d.weights
    assert (w[:, 0] >= w[:, 1]).all() and np.allclose(w.sum(axis=1), 1)  # dominant first
    assert ((w[:, 0] >= 0.5) & (w[:, 0] <= 1.0)).all()
    assert (w[:, 0] > 0.95).any() and (w[:, 0] < 0.9).any()  # pure-ish and mixed pairs
    assert (d.pos_a != d.pos_b).all()
    for g in range(4):  # each group of 16 pairs stays in its window of 20 pure patterns
        start, size = window_for_group(cfg.seed, g, 50, 20)
        sl = slice(16 * g, 16 * g + 16)
        for pos in (d.pos_a[sl], d.pos_b[sl]):
            assert ((pos >= start) & (pos < start + size)).all()
    a = d.augment
    assert set(np.unique(a[:, COL["rot90"]])) <= {0, 1, 2, 3}
    assert (a[:, COL["realism"]] == 1).all() and (a[:, COL["dose"]] >= 300).all()
    assert ((a[:, COL["gamma"]] >= 0.8) & (a[:, COL["gamma"]] <= 1.25)).all()
    rect = draw_pairs(cfg, 0, 64, 50, square=False).augment[:, COL["rot90"]]
    assert set(np.unique(rect)) <= {0, 2}


@pytest.mark.parametrize("pipeline", ["normalize_then_mix", "mix_then_normalize"])
def test_realism_off_c_is_documented_formula_of_stored_arrays(pipeline):
    cfg = _cfg(pipeline=pipeline, augment={"realism": False, "flips": True})
    pool = _pure(50)
    draws, out = _build(cfg, 3, 40, pool)
    A, B, C = (out[k].astype(np.float64) / 65535 for k in ("A", "B", "C"))
    w = draws.weights.astype(np.float64)
    m = w[:, 0, None, None] * A + w[:, 1, None, None] * B
    mask = circular_mask((32, 32))
    if pipeline == "mix_then_normalize":
        expected = np.empty_like(m)
        for k in range(len(m)):
            sel = mask if out["masked"][k] else np.ones_like(mask)
            lo, hi = m[k][sel].min(), m[k][sel].max()
            expected[k] = np.clip((m[k] - lo) / (hi - lo), 0, 1)
    else:
        expected = m
    expected[out["masked"][:, None, None] & ~mask] = 0
    diff = np.abs(out["C"].astype(np.int64) - np.rint(expected * 65535).astype(np.int64))
    assert diff.max() <= 1
    assert out["masked"].any() and not out["masked"].all()


def test_realism_on_recorded_params_reproduce_c():
    cfg = _cfg()
    pool = _pure(50)
    draws, out = _build(cfg, 10, 42, pool)
    mask = circular_mask((32, 32))
    A, B = from_uint16(out["A"]), from_uint16(out["B"])
    aug = draws.augment

    def degrade(m):
        return np.stack([degrade_one(m[k], aug[k], noise_rng(cfg.seed, 10 + k), True)
                         for k in range(len(m))])

    c = combine(cfg.pipeline, A, B, draws.weights, mask=mask, masked=out["masked"],
                degrade=degrade, gamma=aug[:, COL["gamma"]])
    diff = np.abs(np.rint(c * 65535).astype(np.int64) - out["C"].astype(np.int64))
    assert diff.max() <= 1
    # Realism really changed C: it is not the clean mixture.
    clean = combine(cfg.pipeline, A, B, draws.weights, mask=mask, masked=out["masked"])
    assert np.abs(clean - from_uint16(out["C"])).mean() > 0.02


def test_flips_apply_identically_and_targets_stay_clean():
    cfg = _cfg(augment={"realism": False, "flips": True}, mask={"fraction": 0.0},
               weights={"low": 0.999, "high": 1.0, "pure_low": 0.999})
    pool = _pure(50)
    draws, out = _build(cfg, 0, 30, pool)
    aug = draws.augment
    assert (aug[:, COL["rot90"]] != 0).any() and (aug[:, COL["flip"]] != 0).any()
    for k in range(30):
        src = geometric(pool[draws.pos_a[k]], int(aug[k, COL["rot90"]]), int(aug[k, COL["flip"]]))
        src = (src - src.min()) / np.ptp(src)
        assert np.abs(out["A"][k] / 65535 - src).max() < 1e-4
    # wA ~ 1: C is A up to the tiny B share.
    assert np.abs(out["C"].astype(np.int64) - out["A"]).max() < 200


def test_pre_masked_inputs_are_detected_and_recorded():
    cfg = _cfg(augment={"realism": False}, mask={"fraction": 0.0})
    mask = circular_mask((32, 32))
    pool = apply_mask(_pure(50), mask)
    draws, out = _build(cfg, 0, 20, pool)
    assert out["masked"].all()
    assert (out["C"][:, ~mask] == 0).all() and (out["A"][:, mask].max(axis=1) == 65535).all()


def test_dynamic_background_share_and_formula():
    cfg = _cfg(augment={"realism": True, "dynamic_background": 0.5, "dynamic_std": [0.1, 0.2]})
    aug = draw_pairs(cfg, 0, 400, 50, square=True).augment
    std = aug[:, COL["dynamic_std"]]
    drawn = std > 0
    assert 0.4 < drawn.mean() < 0.6 and ((std[drawn] >= 0.1) & (std[drawn] <= 0.2)).all()
    # Off by default: the draws of every other column are unchanged by the new option.
    plain = draw_pairs(_cfg(augment={"realism": True}), 0, 400, 50, square=True).augment
    assert (plain[:, COL["dynamic_std"]] == 0).all()
    assert np.array_equal(np.delete(plain, COL["dynamic_std"], 1), np.delete(aug, COL["dynamic_std"], 1))

    from kdeconv.preprocess.background import dynamic_background

    m = _pure(1)[0] / 1000
    k = int(np.flatnonzero(drawn)[0])
    params = aug[k].copy()
    with_dyn = degrade_one(m, params, noise_rng(cfg.seed, k), True)
    params[COL["dynamic_std"]] = 0
    without = degrade_one(m, params, noise_rng(cfg.seed, k), True)
    expected = without - dynamic_background(without, std=float(std[k]) * 32)
    np.testing.assert_allclose(with_dyn, expected, atol=1e-5)
