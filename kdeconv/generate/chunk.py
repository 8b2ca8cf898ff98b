"""Pure per-chunk kernels of ``generate``: draw pair parameters and build (C, A, B).

Every random number of pair ``i`` comes from ``np.random.default_rng([seed, i, stream])``; the
window of pure patterns a group of pairs draws from, from ``[seed, group, WINDOW]``; pure
simulated pattern ``j``, from ``[seed, j, PURE]``. Nothing depends on chunking or workers. The
pair and pure-pattern streams of a whole range are drawn at once (``keyed_rng``, same bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdeconv.config.generate import GenerateConfig
from kdeconv.generate.augment import AUGMENT_COLUMNS, COL, degrade_one
from kdeconv.mixing import mix
from kdeconv.preprocess import circular_mask, crop, denoise, detect_masked
from kdeconv.preprocess.mask import window_patterns

__all__ = ["STREAM_PAIR", "STREAM_NOISE", "STREAM_PURE", "STREAM_WINDOW", "STREAM_PHASE",
           "pool_labels", "pair_rng",
           "noise_rng", "window_for_group", "PairDraws", "draw_pairs", "nothing_to_prepare",
           "prepare_pure", "bin_patterns",
           "build_pairs", "build_raw_pairs", "recording_noise", "noise_top_up", "grain_means",
           "camera_pattern", "less_camera_pattern",
           "pure_geometry", "resample_pairs"]

STREAM_PAIR, STREAM_NOISE, STREAM_PURE, STREAM_WINDOW, STREAM_PHASE = 0, 1, 2, 3, 4
N_UNIFORMS = 25  # draws 18-24 came with the detector effects; earlier draws are unchanged


def pair_rng(seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, i, STREAM_PAIR])


def noise_rng(seed: int, i: int) -> np.random.Generator:
    """The generator whose draws are the realism noise of pair ``i``, or raw_mix's noise top-up
    (to reproduce C)."""
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
    return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


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


def _windows(cfg: GenerateConfig, pairs: np.ndarray, pool_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, size)`` of each pair's window: one keyed draw per group in the range."""
    groups = pairs // cfg.group_size
    first = int(groups[0]) if len(groups) else 0
    table = [window_for_group(cfg.seed, int(g), pool_size, cfg.window)
             for g in range(first, int(groups[-1]) + 1 if len(groups) else first)]
    starts = np.array([t[0] for t in table], np.int64)
    sizes = np.array([t[1] for t in table], np.int64)
    return starts[groups - first], sizes[groups - first]


def draw_pairs(cfg: GenerateConfig, start: int, stop: int, pool_size: int,
               square: bool, labels: np.ndarray | None = None) -> PairDraws:
    """Pair parameters for pairs ``start:stop``; ``labels`` is ``pool_labels(cfg, pool_size)``.

    Pair ``i`` uses the uniforms of ``pair_rng(seed, i)`` (drawn for the whole range at once by
    ``keyed_uniforms``, bit for bit the same): u[0] picks A in the window, u[1] (and u[24] with
    labels) B, u[2:4] the weights, u[4] the order, u[5] the mask, u[6:8] flips, u[8:24] realism.
    """
    from kdeconv.generate.keyed_rng import keyed_uniforms

    pairs = np.arange(start, stop, dtype=np.int64)
    n = len(pairs)
    u = keyed_uniforms(cfg.seed, pairs, STREAM_PAIR, N_UNIFORMS).T
    w, aug = cfg.weights, cfg.augment
    w0, size = _windows(cfg, pairs, pool_size)
    pa = (u[0] * size).astype(np.int64)
    if labels is None:
        pb = np.where(size > 1, (pa + 1 + (u[1] * (size - 1)).astype(np.int64)) % np.maximum(size, 1), pa)
    else:
        cross = _cross_share(cfg)
        pb = np.array([_partner(int(pa[k]), int(size[k]), u[1, k], u[24, k],
                                labels[w0[k]:w0[k] + size[k]], cross) for k in range(n)], np.int64)
    wa = np.where(u[2] < w.pure_fraction, _uniform(u[3], (w.pure_low, 1.0)), _uniform(u[3], (w.low, w.high)))
    swap = (wa < 0.5) if w.dominant_first else (u[4] < 0.5)
    pa, pb = np.where(swap, pb, pa), np.where(swap, pa, pb)
    wa = np.where(swap, 1.0 - wa, wa)
    weights = np.empty((n, 2), np.float32)
    weights[:, 0] = wa
    # The stored float32 weights must sum to 1 exactly as stored.
    weights[:, 1] = np.float32(1.0) - weights[:, 0]
    masked = u[5] < cfg.mask.fraction
    augment = np.zeros((n, len(AUGMENT_COLUMNS)), np.float32)
    if aug.flips:
        augment[:, COL["rot90"]] = (u[6] * 4).astype(np.int64) if square else 2 * (u[6] * 2).astype(np.int64)
        augment[:, COL["flip"]] = u[7] < 0.5
    augment[:, COL["gamma"]] = 1.0
    if aug.realism:
        augment[:, COL["realism"]] = 1.0
        augment[:, COL["dose"]] = _log_uniform(u[8], aug.dose)
        augment[:, COL["read_noise"]] = _uniform(u[9], aug.read_noise)
        augment[:, COL["blur_sigma"]] = _uniform(u[10], aug.blur_sigma)
        augment[:, COL["gamma"]] = _log_uniform(u[11], aug.gamma)
        augment[:, COL["signal_fraction"]] = _uniform(u[12], aug.signal_fraction)
        augment[:, COL["background_width"]] = _uniform(u[13], aug.background_width)
        augment[:, COL["background_dy"]] = (2 * u[14] - 1) * aug.background_shift
        augment[:, COL["background_dx"]] = (2 * u[15] - 1) * aug.background_shift
        augment[:, COL["dynamic_std"]] = np.where(u[16] < aug.dynamic_background,
                                                  _uniform(u[17], aug.dynamic_std), 0.0)
        augment[:, COL["gain"]] = np.where(u[18] < aug.gain, _uniform(u[19], aug.gain_std), 0.0)
        augment[:, COL["defect_fraction"]] = np.where(u[20] < aug.defects,
                                                      _uniform(u[21], aug.defect_fraction), 0.0)
        augment[:, COL["bits"]] = np.where(u[22] < aug.quantize_8bit, 8, 16)
        augment[:, COL["subtract_background"]] = u[23] < aug.subtract_background
    return PairDraws(w0 + pa, w0 + pb, weights, masked, augment)


def pure_geometry(cfg: GenerateConfig, start: int, stop: int):
    """Orientation (w, x, y, z), PC (x, y, z), (camera tilt, sample tilt) and beam energy (keV,
    NaN = the master's own) of pure patterns ``start:stop``.

    Pattern ``j`` takes 9 uniforms of ``np.random.default_rng([seed, j, STREAM_PURE])``: 3 for
    its orientation (``simulate.random_quaternions``, Shoemake), then PC, tilts and energy.
    """
    from kdeconv.generate.keyed_rng import keyed_uniforms

    src = cfg.source
    u = keyed_uniforms(cfg.seed, np.arange(start, stop), STREAM_PURE, 9).T
    u1, u2, u3 = u[0], u[1], u[2]
    quats = np.stack([np.sqrt(u1) * np.cos(2 * np.pi * u3), np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
                      np.sqrt(1 - u1) * np.cos(2 * np.pi * u2), np.sqrt(u1) * np.sin(2 * np.pi * u3)],
                     axis=1)
    quats[quats[:, 0] < 0] *= -1
    u = u[3:]  # u[5] came with the energy range; u[:5] are unchanged
    pcs = np.stack([_uniform(u[0], src.pc_x), _uniform(u[1], src.pc_y), _uniform(u[2], src.pc_z)], axis=1)
    tilts = np.stack([_uniform(u[3], src.camera_tilt), _uniform(u[4], src.sample_tilt)], axis=1)
    energies = np.full(stop - start, np.nan) if src.energy is None else _uniform(u[5], src.energy)
    return quats, pcs, tilts, energies


def bin_patterns(patterns: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of ``(n, sy, sx)``, float32 (sizes must divide)."""
    x = np.asarray(patterns, dtype=np.float32)
    if factor == 1:
        return x
    n, sy, sx = x.shape
    return x.reshape(n, sy // factor, factor, sx // factor, factor).mean(axis=(2, 4))


def nothing_to_prepare(cfg: GenerateConfig, binned: bool) -> bool:
    """True when ``prepare_pure`` has no binning, crop or denoise to do."""
    pre = cfg.preprocess
    return (binned or pre.binning == 1) and pre.crop is None and pre.denoise_sigma <= 0


def prepare_pure(raw: np.ndarray, cfg: GenerateConfig, binned: bool) -> np.ndarray:
    """Raw pure patterns -> ready to mix: bin (unless ``binned``), crop, denoise (float32).

    With none of these to do the patterns come back as they are: the mix converts each block
    of pairs to float32 while it is in cache, with the same numbers (integers are exact in
    float32), instead of a pass over the whole stack at twice its size first.
    """
    if nothing_to_prepare(cfg, binned):
        return np.asarray(raw)
    x = np.asarray(raw, dtype=np.float32)
    if not binned:
        x = bin_patterns(x, cfg.preprocess.binning)
    if cfg.preprocess.crop is not None:
        x = crop(x, cfg.preprocess.crop)
    return denoise(x, cfg.preprocess.denoise_sigma)


def _geometric_rows(stack: np.ndarray, geo: np.ndarray) -> np.ndarray:
    """``geometric`` of each pattern with its own (rot90, flip), each copied once from its
    view into the output (grouping by transform cost a gather and a scatter more)."""
    out = np.empty_like(stack)
    for k, (rot90, flip) in enumerate(np.asarray(geo, int)):
        view = stack[k, :, ::-1] if flip else stack[k]
        out[k] = np.rot90(view, rot90) if rot90 % 4 else view
    return out


def build_raw_pairs(cfg: GenerateConfig, draws: PairDraws, raw_a: np.ndarray, raw_b: np.ndarray,
                    static_bg: np.ndarray | None, targets_a: np.ndarray | None = None,
                    targets_b: np.ndarray | None = None, start: int = 0) -> dict[str, np.ndarray]:
    """``pipeline: raw_mix``: C = wA*A + wB*B of raw map patterns (a detector sums the two
    crystals' electrons), then C, A and B each get separate's preprocessing (``model_input``);
    flips come last, so the static background is removed where the detector put it.

    With the source's ``noise`` (a, b), C is topped up to one recording's noise (``noise_top_up``;
    pair ``start + k`` draws from its own generator). ``targets_a``, ``targets_b``: A and B as
    given (preprocessed already, at the working shape; e.g. grain means), instead of the
    preprocessed raw patterns themselves."""
    from kdeconv.mixing import to_uint16
    from kdeconv.separate.chunk import preprocess_patterns

    spec = cfg.model_input
    recipe = spec.recipe()
    a = window_patterns(np.asarray(raw_a, np.float32), recipe)
    b = window_patterns(np.asarray(raw_b, np.float32), recipe)
    w = draws.weights.astype(np.float32)
    c = a * w[:, 0, None, None] + b * w[:, 1, None, None]
    if cfg.source.noise is not None:  # raw_mix sources are map sources
        c = noise_top_up(c, a, b, w, cfg.source.noise, cfg.seed, start)
    mask = circular_mask(a.shape[-2:])
    masked = detect_masked(a, mask) | detect_masked(b, mask)
    work = tuple(spec.work_shape) if spec.work_shape else None
    c = preprocess_patterns(c, recipe, static_bg, work, masked)
    if targets_a is None:
        a, b = (preprocess_patterns(x, recipe, static_bg, work, masked) for x in (a, b))
    else:
        a, b = (np.array(t, dtype=np.float32) for t in (targets_a, targets_b))
        if masked.any():
            a[masked] *= circular_mask(a.shape[-2:])
            b[masked] *= circular_mask(b.shape[-2:])
    geo = draws.augment[:, [COL["rot90"], COL["flip"]]].astype(int)
    if geo.any():
        c, a, b = (_geometric_rows(x, geo) for x in (c, a, b))
    return {"C": to_uint16(c), "A": to_uint16(a), "B": to_uint16(b), "masked": masked}


def recording_noise(raw: np.ndarray, grains: np.ndarray) -> tuple[float, float] | None:
    """The recordings' noise variance as a line in the counts, ``var = a*I + b`` (a photon
    transfer curve), from the pure patterns ``raw`` (n, sy, sx) of known ``grains`` (n,): the
    spread of each grain's patterns about their mean, pooled over grains of two or more patterns
    and fitted to the median per intensity bin, so that the few band-edge pixels moved by an
    orientation gradient or a drifting PC count little. None when no grain has two patterns."""
    from scipy.stats import chi2

    raw = np.asarray(raw, np.float64)
    grains = np.asarray(grains)
    levels, spreads = [], []
    for grain in np.unique(grains):
        rows = raw[grains == grain]
        if len(rows) < 2:
            continue
        mean = rows.mean(axis=0)
        # unbiased per pixel, then scaled so that the median of pure noise is its variance
        var = (((rows - mean) ** 2).sum(axis=0) / chi2.median(len(rows) - 1)).ravel()
        mean = mean.ravel()
        lit = mean > 0  # not outside a round screen's window
        levels.append(mean[lit])
        spreads.append(var[lit])
    level = np.concatenate(levels) if levels else np.zeros(0)
    spread = np.concatenate(spreads) if spreads else np.zeros(0)
    if level.size < 64:
        return None
    edges = np.unique(np.quantile(level, np.linspace(0.02, 0.98, 17)))
    which = np.digitize(level, edges[1:-1])
    bins = [k for k in range(len(edges) - 1) if (which == k).sum() >= 8]
    x = np.array([np.median(level[which == k]) for k in bins])
    y = np.array([np.median(spread[which == k]) for k in bins])
    if len(x) < 2:
        return (0.0, float(np.median(spread)))
    slope, offset = np.polyfit(x, y, 1)
    # the offset may be negative (8-bit rounding and clipping at the dark end); the top-up clips
    return (float(max(slope, 0.0)), float(offset))


def noise_top_up(c: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray,
                 noise: tuple[float, float], seed: int, start: int) -> np.ndarray:
    """Mixed raw patterns ``c`` = wA*a + wB*b with noise added up to one recording's.

    A detector records the sum of two crystals once, with the noise of its total counts,
    a*(wA*IA + wB*IB) + b; mixing two recordings gives wA^2 and wB^2 of theirs (half at 50/50).
    The difference, wA*wB*(a*(IA + IB) + 2b), is drawn as Gaussian noise, pair ``start + k``
    from its own generator (the same numbers on any worker)."""
    slope, offset = noise
    wa, wb = w[:, 0, None, None], w[:, 1, None, None]
    var = np.maximum(wa * wb * (slope * np.maximum(a + b, 0.0) + 2.0 * offset), 0.0)
    lit = (a != 0) | (b != 0)  # nothing is added outside a round screen's window
    out = np.array(c, np.float32)
    for k in range(len(c)):
        rng = noise_rng(seed, start + k)
        out[k] += (np.sqrt(var[k]) * rng.standard_normal(c.shape[1:]) * lit[k]).astype(np.float32)
    return np.maximum(out, 0.0)


def grain_means(prepared: np.ndarray, grains: np.ndarray) -> np.ndarray:
    """For each of ``prepared`` patterns (n, sy, sx) in [0, 1], the mean of all patterns of its
    grain (``grains`` (n,) ids), stretched to [0, 1] again: averaging a grain's patterns keeps its
    bands and cuts the detector noise by the square root of their number."""
    from kdeconv.preprocess.background import rescale_per_pattern

    grains = np.asarray(grains)
    out = np.empty(prepared.shape, np.float32)
    for grain in np.unique(grains):
        rows = grains == grain
        out[rows] = prepared[rows].mean(axis=0, dtype=np.float64).astype(np.float32)
    return rescale_per_pattern(out, 0.0, 1.0)


# Grains needed to tell the camera's fine pattern from a band, and how consistent across the grains
# (median over the standard error of the median) a pixel's deviation must be to count as the
# camera's. On grain means of a 30x30 map, 9 grains: a camera with strong pixel gain 0.53 of the
# pixels (grains' NCC with each other 0.70 -> 0.14); hcp Zr through a clean camera 0.05.
CAMERA_PATTERN_MIN_GRAINS = 6
CAMERA_PATTERN_T = 3.0
# Removed only where it holds this share of the grain means' variance: the strong-gain camera 0.64
# (adapted, both grains at minority >= 0.25 / 0.1-0.2: 77.1 / 5.9% -> 93.3 / 35.3%; at a second seed
# 79.0 / 7.8% -> 81.0 / 21.6%); the binned 8-bit camera 0.17, where removing it cost 5 points
# (86.7 -> 81.9%, 85.7 -> 80.0% at a second seed); Zr, alpha-Ti, Mg 0.02.
CAMERA_PATTERN_MIN_SHARE = 0.3


def camera_pattern(means: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """The fine pattern every grain shares, from ``means`` (g, sy, sx), one mean pattern per grain
    (``grain_means``): each grain's detail finer than a pattern width / 8 (the static background's
    scale), where its median over the grains stands out from their spread. That is the camera's,
    not a crystal's (pixel gain, stuck pixels, gain blotches); averaging a grain's patterns keeps
    it. Returns the pattern (None when it holds less than ``CAMERA_PATTERN_MIN_SHARE`` of the
    means' variance) and that share (None with fewer than ``CAMERA_PATTERN_MIN_GRAINS`` grains)."""
    from kdeconv.preprocess.background import dynamic_background

    if len(means) < CAMERA_PATTERN_MIN_GRAINS:
        return None, None
    detail = means - dynamic_background(means, std=means.shape[-1] / 8)
    shared = np.median(detail, axis=0)
    spread = 1.4826 * np.median(np.abs(detail - shared), axis=0)
    standard_error = 1.2533 * spread / np.sqrt(len(means))  # of a median
    camera = np.where(np.abs(shared) > CAMERA_PATTERN_T * standard_error, shared, 0.0)
    share = float(camera.var() / max(float(means.var(axis=(1, 2)).mean()), 1e-12))
    return (camera.astype(np.float32) if share >= CAMERA_PATTERN_MIN_SHARE else None), share


def less_camera_pattern(patterns: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """``patterns`` (n, sy, sx) in [0, 1] less the ``camera_pattern``, stretched to [0, 1] again."""
    from kdeconv.preprocess.background import rescale_per_pattern

    return rescale_per_pattern(patterns - camera[None], 0.0, 1.0)


def resample_pairs(pairs: dict[str, np.ndarray], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """C, A and B (uint16) of built pairs resampled to ``shape`` the way ``separate`` resamples a
    map's patterns for its model; masked pairs are zeroed outside the mask again at ``shape``."""
    from kdeconv.mixing import from_uint16, to_uint16
    from kdeconv.preprocess.resample import resample

    out = dict(pairs)
    masked = np.asarray(pairs["masked"], bool)
    outside = ~circular_mask(shape)
    for name in ("C", "A", "B"):
        x = np.clip(resample(from_uint16(pairs[name]), shape), 0.0, 1.0)
        if masked.any():
            x[masked[:, None, None] & outside] = 0.0
        out[name] = to_uint16(x)
    return out


# Pairs per block of the mix: ~256k pixels keeps a block's float32 stacks (~1 MB) in the
# core's cache through the dozen passes of normalise, quantise and mix (about twice the rate of
# one pass over a whole 500-pair chunk). Every pair's numbers depend only on the pair.
BLOCK_PIXELS = 1 << 18


def build_pairs(cfg: GenerateConfig, start: int, draws: PairDraws, pure_a: np.ndarray,
                pure_b: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """(C, A, B) uint16 and the per-pair ``masked`` flag for prepared pure patterns of the pairs.

    A pair is masked when its mask was drawn or either input is already masked.
    """
    pre_masked = detect_masked(pure_a, mask) | detect_masked(pure_b, mask)
    masked = draws.masked | pre_masked
    geo = draws.augment[:, [COL["rot90"], COL["flip"]]].astype(int)
    if geo.any():
        pure_a, pure_b = _geometric_rows(pure_a, geo), _geometric_rows(pure_b, geo)
    n = len(masked)
    block = max(1, BLOCK_PIXELS // int(np.prod(np.shape(pure_a)[-2:])))
    out = {name: np.empty(np.shape(pure_a), np.uint16) for name in ("C", "A", "B")}
    for s in range(0, n, block):
        rows = slice(s, min(n, s + block))
        part = _mix_block(cfg, start + s, draws.weights[rows], draws.augment[rows], masked[rows],
                          pure_a[rows], pure_b[rows], mask)
        for name, value in zip(("C", "A", "B"), part):
            out[name][rows] = value
    out["masked"] = masked
    return out


def _mix_block(cfg: GenerateConfig, start: int, weights: np.ndarray, augment: np.ndarray,
               masked: np.ndarray, pure_a: np.ndarray, pure_b: np.ndarray, mask: np.ndarray):
    realism = cfg.augment.realism

    def degrade(m: np.ndarray) -> np.ndarray:
        return np.stack([degrade_one(m[k], augment[k], noise_rng(cfg.seed, start + k),
                                     cfg.augment.background_correction) for k in range(len(m))])

    norm = cfg.normalize
    # No pair masked: the same numbers without building per-pair mask arrays.
    any_masked = bool(masked.any())
    return mix(cfg.pipeline, pure_a, pure_b, weights, mask=mask if any_masked else None,
               masked=masked if any_masked else None,
               method=norm.method, smart=norm.smart, percentiles=tuple(norm.percentiles),
               degrade=degrade if realism else None,
               gamma=augment[:, COL["gamma"]] if realism else None, as_uint16=True)
