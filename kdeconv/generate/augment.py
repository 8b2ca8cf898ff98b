"""Per-pair augmentation: geometric (identical on A, B, C) and realism (on C only).

Realism, for the clean mixture M in [0, 1] of one pair (see NOTES "A realistic mixed pattern"):

    G(y, x) = exp(-((y - cy)^2 + (x - cx)^2) / (2 (w * S)^2))      smooth detector background
    E       = dose * G * ((1 - s) + s * blur_sigma(M))              expected counts
    K       = Poisson(E) + Normal(0, read_noise^2)                  recorded counts
    R       = (K / (dose * G) - (1 - s)) / s    with background_correction (true background
                                                divided out; E[R] = blur(M))
    R       = K / dose                          without (the pattern rides on the background)
    R       = R - blur_{d * S}(R)                for pairs drawn with dynamic_background: the
                                                dynamic background removal that `kdeconv separate`
                                                applies to map patterns (kikuchipy's Gaussian
                                                filter, d = dynamic_std in pattern widths)

with S = max(sy, sx), (cy, cx) the pattern centre shifted by (background_dy, background_dx) * S,
w = background_width and s = signal_fraction. The noise comes from ``noise_rng(seed, i)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AUGMENT_COLUMNS", "geometric", "degrade_one", "background_field"]

AUGMENT_COLUMNS = ("rot90", "flip", "realism", "dose", "read_noise", "blur_sigma", "gamma",
                   "signal_fraction", "background_width", "background_dy", "background_dx",
                   "dynamic_std")
COL = {name: k for k, name in enumerate(AUGMENT_COLUMNS)}


def geometric(pattern: np.ndarray, rot90: int, flip: int) -> np.ndarray:
    """Left-right flip (if ``flip``) then ``rot90`` quarter turns, on the last two axes."""
    out = pattern[..., :, ::-1] if flip else pattern
    if rot90 % 4:
        out = np.rot90(out, k=int(rot90), axes=(-2, -1))
    return np.ascontiguousarray(out)


def background_field(shape: tuple[int, int], width: float, dy: float, dx: float) -> np.ndarray:
    sy, sx = shape
    size = max(sy, sx)
    cy = (sy - 1) / 2 + dy * size
    cx = (sx - 1) / 2 + dx * size
    y = np.arange(sy)[:, None] - cy
    x = np.arange(sx)[None, :] - cx
    return np.exp(-(y * y + x * x) / (2 * (width * size) ** 2))


def degrade_one(mixture: np.ndarray, params: np.ndarray, rng: np.random.Generator,
                background_correction: bool) -> np.ndarray:
    """R(M) for one ``(sy, sx)`` mixture given its ``augment`` row (see module docstring)."""
    from scipy.ndimage import gaussian_filter

    if not params[COL["realism"]]:
        return mixture
    m = mixture.astype(np.float64)
    sigma = float(params[COL["blur_sigma"]])
    if sigma > 0:
        m = gaussian_filter(m, sigma, mode="nearest")
    dose = float(params[COL["dose"]])
    s = float(params[COL["signal_fraction"]])
    g = background_field(m.shape, float(params[COL["background_width"]]),
                         float(params[COL["background_dy"]]), float(params[COL["background_dx"]]))
    expected = dose * g * ((1 - s) + s * m)
    counts = rng.poisson(expected).astype(np.float64)
    read = float(params[COL["read_noise"]])
    if read > 0:
        counts += rng.normal(0.0, read, size=counts.shape)
    if background_correction:
        out = ((counts / (dose * g) - (1 - s)) / s).astype(np.float32)
    else:
        out = (counts / dose).astype(np.float32)
    dynamic = float(params[COL["dynamic_std"]])
    if dynamic > 0:
        from kdeconv.preprocess.background import dynamic_background

        out = out - dynamic_background(out, std=dynamic * max(out.shape))
    return out
