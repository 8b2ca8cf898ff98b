"""Per-pair augmentation: geometric (identical on A, B, C) and realism (on C only).

Realism, for the clean mixture M in [0, 1] of one pair (see NOTES "A realistic mixed pattern"):

    G(y, x) = exp(-((y - cy)^2 + (x - cx)^2) / (2 (w * S)^2))      smooth detector background
    E       = dose * G * ((1 - s) + s * blur_sigma(M))              expected counts
    K       = Poisson(E) + Normal(0, read_noise^2)                  recorded counts (*)
    R       = (K / (dose * G) - (1 - s)) / s    with background_correction (true background
                                                divided out; E[R] = blur(M))
    R       = K / dose                          without (the pattern rides on the background)
    R       = R - blur_{d * S}(R)                for pairs drawn with dynamic_background: the
                                                dynamic background removal that `kdeconv separate`
                                                applies to map patterns (kikuchipy's Gaussian
                                                filter, d = dynamic_std in pattern widths)

Detector effects, each on the pairs drawn for it:

    E       = E * (1 + g * F)                   fixed-pattern gain: F is a unit-std field, half
                                                smooth blotches (scintillator, fibre optics), half
                                                pixel response; g = gain
    R       = K / (dose * s) - G (1 - s) / s     subtract_background: the background subtracted,
                                                not divided out, so E[R] = G * M keeps the
                                                bright-centre envelope that map-mean subtraction
                                                leaves on real patterns
    hot / dead pixels                           a share (defect_fraction) of the pixels stuck at
                                                1.5x the pattern maximum or at zero, half each
    8 bits                                      R quantised to 256 levels over its range

with S = sy (the detector's height, the unit of Bruker's PCz: a wider detector sees more of the
same background, not a broader one), (cy, cx) the pattern centre shifted by (background_dy,
background_dx) * S, w = background_width and s = signal_fraction. The noise comes from ``noise_rng(seed, i)``.

(*) Pairs draw K as E + sqrt(E + read_noise^2) Z where E >= 30 counts (the normal limit: the
same mean and variance, skewness below 0.19), exactly below: a third of the cost of Poisson
draws; Z comes from the Box-Muller transform (``standard_normal_f32``). Simulated maps
(``exact_counts``) draw Poisson counts everywhere.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AUGMENT_COLUMNS", "geometric", "degrade_one", "background_field", "recorded_counts",
           "NORMAL_LIMIT_COUNTS", "standard_normal_f32", "gaussian_blur", "gain_field", "stuck_pixels",
           "quantize"]

AUGMENT_COLUMNS = ("rot90", "flip", "realism", "dose", "read_noise", "blur_sigma", "gamma",
                   "signal_fraction", "background_width", "background_dy", "background_dx",
                   "dynamic_std", "gain", "defect_fraction", "bits", "subtract_background")
COL = {name: k for k, name in enumerate(AUGMENT_COLUMNS)}


def geometric(pattern: np.ndarray, rot90: int, flip: int) -> np.ndarray:
    """Left-right flip (if ``flip``) then ``rot90`` quarter turns, on the last two axes."""
    out = pattern[..., :, ::-1] if flip else pattern
    if rot90 % 4:
        out = np.rot90(out, k=int(rot90), axes=(-2, -1))
    return np.ascontiguousarray(out)


def background_field(shape: tuple[int, int], width: float, dy: float, dx: float) -> np.ndarray:
    """G (float32): the Gaussian is separable, so one row and one column of exponentials."""
    sy, sx = shape
    size = sy  # the background's angular width is the camera's distance, in heights (PCz)
    cy = (sy - 1) / 2 + dy * size
    cx = (sx - 1) / 2 + dx * size
    k = -1.0 / (2 * (width * size) ** 2)
    gy = np.exp(k * (np.arange(sy) - cy) ** 2).astype(np.float32)
    gx = np.exp(k * (np.arange(sx) - cx) ** 2).astype(np.float32)
    return gy[:, None] * gx[None, :]


# Expected counts from which a pixel's Poisson noise is drawn as its normal limit.
NORMAL_LIMIT_COUNTS = 30.0


def standard_normal_f32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal draws (float32) by the Box-Muller transform: two uniforms give two
    exact normal deviates through log, sqrt, cos and sin, which numpy runs vectorised: a third
    of the time of ``Generator.standard_normal`` (float32 ziggurat) at 120x120."""
    n = int(np.prod(shape))
    half = (n + 1) // 2
    u = rng.random(2 * half, dtype=np.float32)
    radius = u[:half]
    np.subtract(np.float32(1), radius, out=radius)  # (0, 1]: log never sees 0
    np.log(radius, out=radius)
    radius *= np.float32(-2)
    np.sqrt(radius, out=radius)
    angle = u[half:]
    angle *= np.float32(2 * np.pi)
    z = np.empty(2 * half, np.float32)
    np.cos(angle, out=z[:half])
    np.sin(angle, out=z[half:])
    z[:half] *= radius
    z[half:] *= radius
    return z[:n].reshape(shape)


def recorded_counts(expected: np.ndarray, read_noise: float, rng: np.random.Generator,
                    exact: bool = False) -> np.ndarray:
    """K = Poisson(E) + Normal(0, read_noise^2) (float32): exact Poisson where E is below
    ``NORMAL_LIMIT_COUNTS``, E + sqrt(E + read_noise^2) Z above (the same mean and variance).

    ``exact``: Poisson draws for every pixel, then the read noise (simulated maps: what the
    checks of a model are measured on stays as it was).
    """
    expected = np.asarray(expected, np.float32)
    if exact:
        counts = rng.poisson(expected.astype(np.float64)).astype(np.float32)
        if read_noise > 0:
            counts += rng.normal(0.0, read_noise, size=counts.shape).astype(np.float32)
        return counts
    z = standard_normal_f32(rng, expected.shape)
    counts = expected + np.float32(read_noise * read_noise)
    np.sqrt(counts, out=counts)
    counts *= z
    counts += expected
    low = expected < NORMAL_LIMIT_COUNTS
    if low.any():
        counts[low] = rng.poisson(expected[low]) + np.float32(read_noise) * z[low]
    return counts


def gaussian_blur(pattern: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(pattern, sigma, mode="nearest")`` for one 2-D pattern,
    the same numbers: the two 1-D passes without its per-call set-up, a tenth of a pattern's
    blur at 120x120."""
    from scipy.ndimage import correlate1d

    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x * x)
    weights /= weights.sum()
    out = correlate1d(pattern, weights, axis=0, mode="nearest")
    return correlate1d(out, weights, axis=1, mode="nearest", output=out)


def degrade_one(mixture: np.ndarray, params: np.ndarray, rng: np.random.Generator,
                background_correction: bool, exact_counts: bool = False) -> np.ndarray:
    """R(M) for one ``(sy, sx)`` mixture given its ``augment`` row (see module docstring);
    ``exact_counts``: Poisson noise drawn exactly at every count (``recorded_counts``)."""
    if not params[COL["realism"]]:
        return mixture
    m = np.asarray(mixture, dtype=np.float32)  # float32 throughout: counts need 7 digits at most
    sigma = float(params[COL["blur_sigma"]])
    if sigma > 0:
        m = gaussian_blur(m, sigma)
    dose = float(params[COL["dose"]])
    s = float(params[COL["signal_fraction"]])
    g = background_field(m.shape, float(params[COL["background_width"]]),
                         float(params[COL["background_dy"]]), float(params[COL["background_dx"]]))
    expected = m * np.float32(dose * s)
    expected += np.float32(dose * (1 - s))
    expected *= g
    gain = float(params[COL["gain"]])
    if gain > 0:
        expected *= np.clip(1.0 + gain * gain_field(m.shape, rng), 0.05, None).astype(np.float32)
    counts = recorded_counts(expected, float(params[COL["read_noise"]]), rng, exact_counts)
    defects = float(params[COL["defect_fraction"]])
    if defects > 0:
        counts = stuck_pixels(counts, defects, rng)
    if params[COL["subtract_background"]]:
        out = counts / np.float32(dose * s) - g * np.float32((1 - s) / s)
    elif background_correction:
        out = counts / (g * np.float32(dose))
        out -= np.float32(1 - s)
        out /= np.float32(s)
    else:
        out = counts / np.float32(dose)
    dynamic = float(params[COL["dynamic_std"]])
    if dynamic > 0:
        from kdeconv.preprocess.background import dynamic_background

        out = out - dynamic_background(out, std=dynamic * max(out.shape))
    if params[COL["bits"]] == 8:
        out = quantize(out, 256)
    return out


def gain_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-std fixed-pattern gain field: smooth blotches plus pixel response, equal parts."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(rng.normal(size=shape), max(shape) / 12, mode="wrap")
    pixel = rng.normal(size=shape)
    field = smooth / max(smooth.std(), 1e-12) + pixel
    return field / field.std()


def stuck_pixels(counts: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Set ``fraction`` of the pixels hot (1.5x the maximum) or dead (0), half each."""
    out = counts.copy()
    n = max(1, int(round(fraction * out.size)))
    where = rng.choice(out.size, size=n, replace=False)
    hot = rng.random(n) < 0.5
    flat = out.reshape(-1)
    flat[where[hot]] = 1.5 * float(counts.max())
    flat[where[~hot]] = 0.0
    return out


def quantize(pattern: np.ndarray, levels: int) -> np.ndarray:
    """Round to ``levels`` steps over the pattern's own range (an 8-bit camera or export)."""
    lo, hi = float(pattern.min()), float(pattern.max())
    if hi <= lo:
        return pattern
    step = (hi - lo) / (levels - 1)
    return (np.rint((pattern - lo) / step) * step + lo).astype(np.float32)
