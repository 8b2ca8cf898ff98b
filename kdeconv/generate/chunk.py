"""Pure per-chunk kernels of ``generate``: draw pair parameters and build (C, A, B).

Every random number of pair ``i`` comes from ``np.random.default_rng([seed, i, stream])``; the
window of pure patterns a group of pairs draws from, from ``[seed, group, WINDOW]``; pure
simulated pattern ``j``, from ``[seed, j, PURE]``. Nothing depends on chunking or workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdeconv.config.generate import GenerateConfig
from kdeconv.generate.augment import AUGMENT_COLUMNS, COL, degrade_one, geometric
from kdeconv.mixing import mix
from kdeconv.preprocess import circular_mask, crop, denoise, detect_masked

__all__ = ["STREAM_PAIR", "STREAM_NOISE", "STREAM_PURE", "STREAM_WINDOW", "STREAM_PHASE",
           "pool_labels", "pair_rng",
           "noise_rng", "window_for_group", "PairDraws", "draw_pairs", "prepare_pure", "bin_patterns",
           "build_pairs", "build_raw_pairs", "pure_geometry"]

STREAM_PAIR, STREAM_NOISE, STREAM_PURE, STREAM_WINDOW, STREAM_PHASE = 0, 1, 2, 3, 4
N_UNIFORMS = 25  # draws 18-24 came with the detector effects; earlier draws are unchanged


def pair_rng(seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, i, STREAM_PAIR])


def noise_rng(seed: int, i: int) -> np.random.Generator:
    """The generator whose draws are the realism noise of pair ``i`` (to reproduce C)."""
    return np.random.default_rng([seed, i, STREAM_NOISE])


def window_for_group(seed: int, group: int, pool_size: int, window: int) -> tuple[int, int]:
    """``(start, size)`` in pool positions of the pure patterns that group ``group`` draws from."""
    size = min(window, pool_size)
    if pool_size <= window:
        return 0, size
    start = int(np.random.default_rng([seed, group, STREAM_WINDOW]).integers(0, pool_size - size + 1))
    return start, size


def _uniform(u, lo_hi):
    lo, hi = lo_hi
    return lo + u * (hi - lo)


def _log_uniform(u, lo_hi):
    lo, hi = lo_hi
    return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))


@dataclass
class PairDraws:
    pos_a: np.ndarray      # (n,) int64 positions in the pool of pure patterns
    pos_b: np.ndarray
    weights: np.ndarray    # (n, 2) float32, rows sum to 1
    masked: np.ndarray     # (n,) bool: circular mask drawn for this pair
    augment: np.ndarray    # (n, len(AUGMENT_COLUMNS)) float32


def pool_labels(cfg: GenerateConfig, pool_size: int) -> np.ndarray | None:
    """Label (phase) of every pure pattern in pool order, or None when there is only one.

    Simulated sources share pure patterns out to their phases in proportion to the weights, over
    a permutation keyed by the seed (so every phase is spread over the whole pool and any window).
    Map sources take the labels given with their indices.
    """
    src = cfg.source
    if getattr(src, "kind", None) == "map":
        return None if src.labels is None else np.asarray(src.pool_labels(), np.int64)
    phases = src.phase_sources()
    if len(phases) < 2:
        return None
    weights = np.array([p.weight for p in phases], np.float64)
    counts = np.floor(weights / weights.sum() * pool_size).astype(np.int64)
    counts[: pool_size - counts.sum()] += 1  # the remainder, one each, to the first phases
    by_rank = np.repeat(np.arange(len(phases)), counts)
    order = np.random.default_rng([cfg.seed, STREAM_PHASE]).permutation(pool_size)
    labels = np.empty(pool_size, np.int64)
    labels[order] = by_rank
    return labels


def _cross_share(cfg: GenerateConfig) -> float:
    src = cfg.source
    return src.cross_label if getattr(src, "kind", None) == "map" else src.cross_phase


def _partner(pa: int, size: int, u_pick: float, u_cross: float, window_labels, cross: float) -> int:
    """Position of B in the window: any other pattern, or one of the same or another label."""
    if window_labels is None or size < 2:
        return (pa + 1 + int(u_pick * (size - 1))) % size if size > 1 else pa
    own = window_labels[pa]
    want_other = u_cross < cross
    choices = np.flatnonzero((window_labels != own) if want_other else (window_labels == own))
    choices = choices[choices != pa]
    if choices.size == 0:  # the window holds no such partner: any other pattern
        return (pa + 1 + int(u_pick * (size - 1))) % size
    return int(choices[min(int(u_pick * choices.size), choices.size - 1)])


def draw_pairs(cfg: GenerateConfig, start: int, stop: int, pool_size: int,
               square: bool, labels: np.ndarray | None = None) -> PairDraws:
    """Pair parameters for pairs ``start:stop``; ``labels`` is ``pool_labels(cfg, pool_size)``."""
    n = stop - start
    pos_a = np.empty(n, np.int64)
    pos_b = np.empty(n, np.int64)
    weights = np.empty((n, 2), np.float32)
    masked = np.empty(n, bool)
    augment = np.zeros((n, len(AUGMENT_COLUMNS)), np.float32)
    w, aug = cfg.weights, cfg.augment
    cross = _cross_share(cfg)
    for k, i in enumerate(range(start, stop)):
        u = pair_rng(cfg.seed, i).random(N_UNIFORMS)
        w0, size = window_for_group(cfg.seed, i // cfg.group_size, pool_size, cfg.window)
        pa = int(u[0] * size)
        window_labels = None if labels is None else labels[w0:w0 + size]
        pb = _partner(pa, size, u[1], u[24], window_labels, cross)
        if u[2] < w.pure_fraction:
            wa = _uniform(u[3], (w.pure_low, 1.0))
        else:
            wa = _uniform(u[3], (w.low, w.high))
        swap = (wa < 0.5) if w.dominant_first else (u[4] < 0.5)
        if swap:
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
            row[COL["dose"]] = _log_uniform(u[8], aug.dose)
            row[COL["read_noise"]] = _uniform(u[9], aug.read_noise)
            row[COL["blur_sigma"]] = _uniform(u[10], aug.blur_sigma)
            row[COL["gamma"]] = _log_uniform(u[11], aug.gamma)
            row[COL["signal_fraction"]] = _uniform(u[12], aug.signal_fraction)
            row[COL["background_width"]] = _uniform(u[13], aug.background_width)
            row[COL["background_dy"]] = (2 * u[14] - 1) * aug.background_shift
            row[COL["background_dx"]] = (2 * u[15] - 1) * aug.background_shift
            if u[16] < aug.dynamic_background:
                row[COL["dynamic_std"]] = _uniform(u[17], aug.dynamic_std)
            if u[18] < aug.gain:
                row[COL["gain"]] = _uniform(u[19], aug.gain_std)
            if u[20] < aug.defects:
                row[COL["defect_fraction"]] = _uniform(u[21], aug.defect_fraction)
            row[COL["bits"]] = 8 if u[22] < aug.quantize_8bit else 16
            row[COL["subtract_background"]] = float(u[23] < aug.subtract_background)
    # The stored float32 weights must sum to 1 exactly as stored.
    weights[:, 1] = np.float32(1.0) - weights[:, 0]
    return PairDraws(pos_a, pos_b, weights, masked, augment)


def pure_geometry(cfg: GenerateConfig, start: int, stop: int):
    """Orientation (w, x, y, z), PC (x, y, z), (camera tilt, sample tilt) and beam energy (keV,
    NaN = the master's own) of pure patterns ``start:stop``."""
    from kdeconv.simulate import random_quaternions

    src = cfg.source
    n = stop - start
    quats = np.empty((n, 4))
    pcs = np.empty((n, 3))
    tilts = np.empty((n, 2))
    energies = np.full(n, np.nan)
    for k, j in enumerate(range(start, stop)):
        rng = np.random.default_rng([cfg.seed, j, STREAM_PURE])
        quats[k] = random_quaternions(rng, 1)[0]
        u = rng.random(6)  # u[5] came with the energy range; u[:5] are unchanged
        pcs[k] = (_uniform(u[0], src.pc_x), _uniform(u[1], src.pc_y), _uniform(u[2], src.pc_z))
        tilts[k] = (_uniform(u[3], src.camera_tilt), _uniform(u[4], src.sample_tilt))
        if src.energy is not None:
            energies[k] = _uniform(u[5], src.energy)
    return quats, pcs, tilts, energies


def bin_patterns(patterns: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of ``(n, sy, sx)``, float32 (sizes must divide)."""
    x = np.asarray(patterns, dtype=np.float32)
    if factor == 1:
        return x
    n, sy, sx = x.shape
    return x.reshape(n, sy // factor, factor, sx // factor, factor).mean(axis=(2, 4))


def prepare_pure(raw: np.ndarray, cfg: GenerateConfig, binned: bool) -> np.ndarray:
    """Raw pure patterns -> float32 ready to mix: bin (unless ``binned``), crop, denoise."""
    x = np.asarray(raw, dtype=np.float32)
    if not binned:
        x = bin_patterns(x, cfg.preprocess.binning)
    if cfg.preprocess.crop is not None:
        x = crop(x, cfg.preprocess.crop)
    return denoise(x, cfg.preprocess.denoise_sigma)


def build_raw_pairs(cfg: GenerateConfig, draws: PairDraws, raw_a: np.ndarray, raw_b: np.ndarray,
                    static_bg: np.ndarray | None) -> dict[str, np.ndarray]:
    """``pipeline: raw_mix``: C = wA*A + wB*B of raw map patterns (a detector sums the two
    crystals' electrons), then C, A and B each get separate's preprocessing (``model_input``);
    flips come last, so the static background is removed where the detector put it."""
    from kdeconv.mixing import to_uint16
    from kdeconv.separate.chunk import preprocess_patterns

    spec = cfg.model_input
    a = np.asarray(raw_a, np.float32)
    b = np.asarray(raw_b, np.float32)
    w = draws.weights.astype(np.float32)
    c = a * w[:, 0, None, None] + b * w[:, 1, None, None]
    mask = circular_mask(a.shape[-2:])
    masked = detect_masked(a, mask) | detect_masked(b, mask)
    recipe = spec.recipe()
    work = tuple(spec.work_shape) if spec.work_shape else None
    c, a, b = (preprocess_patterns(x, recipe, static_bg, work, masked) for x in (c, a, b))
    geo = draws.augment[:, [COL["rot90"], COL["flip"]]].astype(int)
    if geo.any():
        c, a, b = (np.stack([geometric(p, r, f) for p, (r, f) in zip(x, geo)]) for x in (c, a, b))
    return {"C": to_uint16(c), "A": to_uint16(a), "B": to_uint16(b), "masked": masked}


def build_pairs(cfg: GenerateConfig, start: int, draws: PairDraws, pure_a: np.ndarray,
                pure_b: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """(C, A, B) uint16 and the per-pair ``masked`` flag for prepared pure patterns of the pairs.

    A pair is masked when its mask was drawn or either input is already masked.
    """
    pre_masked = detect_masked(pure_a, mask) | detect_masked(pure_b, mask)
    masked = draws.masked | pre_masked
    geo = draws.augment[:, [COL["rot90"], COL["flip"]]].astype(int)
    if geo.any():
        pure_a = np.stack([geometric(p, r, f) for p, (r, f) in zip(pure_a, geo)])
        pure_b = np.stack([geometric(p, r, f) for p, (r, f) in zip(pure_b, geo)])
    realism = cfg.augment.realism

    def degrade(m: np.ndarray) -> np.ndarray:
        return np.stack([degrade_one(m[k], draws.augment[k], noise_rng(cfg.seed, start + k),
                                     cfg.augment.background_correction) for k in range(len(m))])

    norm = cfg.normalize
    c, a, b = mix(cfg.pipeline, pure_a, pure_b, draws.weights, mask=mask, masked=masked,
                  method=norm.method, smart=norm.smart, percentiles=tuple(norm.percentiles),
                  degrade=degrade if realism else None,
                  gamma=draws.augment[:, COL["gamma"]] if realism else None, as_uint16=True)
    return {"C": c, "A": a, "B": b, "masked": masked}
