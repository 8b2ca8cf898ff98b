"""Static and dynamic background removal, as kikuchipy does it, on a stack of patterns.

Pure numpy/scipy kernels on ``(n, sy, sx)`` arrays (kikuchipy maps one pattern at a time with
numba; here the FFT runs over the whole stack at once). They match
``EBSD.remove_static_background`` and ``EBSD.remove_dynamic_background`` (frequency domain,
Connelly Barnes' padded FFT filter) to within float32 rounding.

Each step ends, like kikuchipy, by stretching every pattern to fill an output range. With the
default ``dtype_out=np.float32`` and ``out_range=(0, 1)`` the result is ready for the model.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from scipy.fft import irfft2, next_fast_len, rfft2

__all__ = ["background_steps", "remove_static_background", "remove_dynamic_background", "dynamic_background",
           "background_evidence", "decide_background", "static_background_from_mean", "defect_pixels",
           "gaussian_window", "rescale_per_pattern", "output_range", "fill_outside_mask", "known_region",
           "decision_rule", "decide_mask", "dead_outside_share", "dead_rim_share", "decide_input"]

_OPERATIONS = ("subtract", "divide")


def output_range(dtype_out, out_range=None) -> tuple[float, float]:
    """kikuchipy's output range: the integer dtype's full range, [-1, 1] for floats, or given."""
    if out_range is not None:
        return float(out_range[0]), float(out_range[1])
    dtype_out = np.dtype(dtype_out)
    if dtype_out.kind in "ui":
        info = np.iinfo(dtype_out)
        return float(info.min), float(info.max)
    return -1.0, 1.0  # skimage's dtype_range for floats


def _as_stack(patterns: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    patterns = np.asarray(patterns)
    if patterns.ndim < 2:
        raise ValueError(f"patterns must be (..., sy, sx), got shape {patterns.shape}")
    return patterns.reshape((-1,) + patterns.shape[-2:]), patterns.shape


def rescale_per_pattern(stack: np.ndarray, omin: float, omax: float) -> np.ndarray:
    """Stretch each pattern of a float32 ``(n, sy, sx)`` stack to [omin, omax] (in place)."""
    imin = stack.min(axis=(1, 2), keepdims=True)
    imax = stack.max(axis=(1, 2), keepdims=True)
    span = imax - imin
    # A flat pattern has no contrast to stretch: map it to omin instead of dividing by zero.
    span[span == 0] = np.inf
    stack -= imin
    stack /= span
    stack *= np.float32(omax - omin)
    stack += np.float32(omin)
    return stack


def _finish(stack: np.ndarray, shape, dtype_out, out_range) -> np.ndarray:
    omin, omax = output_range(dtype_out, out_range)
    stack = rescale_per_pattern(stack, omin, omax)
    # Truncating cast, as kikuchipy's ``astype`` after rescaling.
    return stack.astype(dtype_out, copy=False).reshape(shape)


def remove_static_background(patterns: np.ndarray, static_bg: np.ndarray,
                             operation: str = "subtract", scale_bg: bool = False,
                             dtype_out=np.float32, out_range=(0.0, 1.0)) -> np.ndarray:
    """Subtract (or divide by) one background pattern, then stretch each pattern.

    ``dtype_out=patterns.dtype, out_range=None`` reproduces kikuchipy's defaults.
    """
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got {operation!r}")
    stack, shape = _as_stack(patterns)
    background = np.asarray(static_bg, dtype=np.float32)
    if background.shape != stack.shape[1:]:
        raise ValueError(f"static background {background.shape} does not match patterns {stack.shape[1:]}")
    stack = stack.astype(np.float32)
    if scale_bg:  # background stretched to each pattern's own range
        bmin, bmax = background.min(), background.max()
        unit = (background - bmin) / np.float32(bmax - bmin if bmax > bmin else 1)
        pmin = stack.min(axis=(1, 2), keepdims=True)
        pmax = stack.max(axis=(1, 2), keepdims=True)
        background = unit[None] * (pmax - pmin) + pmin
    if operation == "subtract":
        stack -= background
    else:
        stack /= background
    return _finish(stack, shape, dtype_out, out_range)


def gaussian_window(std: float, truncate: float = 4.0) -> np.ndarray:
    """kikuchipy's Gaussian window for the dynamic background: side int(truncate*std), sum 1."""
    side = int(truncate * std)
    if side < 1:
        raise ValueError(f"std*truncate must be >= 1, got std={std}, truncate={truncate}")
    # scipy.signal.windows.gaussian(side, std), written out: importing scipy.signal costs ~0.6 s.
    n = np.arange(side) - (side - 1) / 2.0
    line = np.exp(-0.5 * (n / std) ** 2)
    window = np.outer(line, line)
    return window / window.sum()


def _pad_stack(stack: np.ndarray, fft_shape, window_shape) -> np.ndarray:
    """Barnes' padding: image top-left, edges extended right/down, wrapped ends filled."""
    n, iy, ix = stack.shape
    wy, wx = window_shape
    fy, fx = fft_shape
    oy, ox = wy - (wy - 1) // 2 - 1, wx - (wx - 1) // 2 - 1
    ey, ex = (wy - 1) // 2, (wx - 1) // 2
    pad = np.zeros((n, fy, fx), dtype=np.float32)
    pad[:, :iy, :ix] = stack
    pad[:, iy:iy + ey, :ix] = stack[:, -1:, :]
    pad[:, :iy, ix:ix + ex] = stack[:, :, -1:]
    if oy:
        pad[:, fy - oy:, :ix] = stack[:, :1, :]
    if ox:
        pad[:, :iy, fx - ox:] = stack[:, :, :1]
    pad[:, iy:iy + ey, ix:ix + ex] = stack[:, -1:, -1:]
    if oy:
        pad[:, fy - oy:, ix:ix + ex] = stack[:, :1, -1:]
    if ox:
        pad[:, iy:iy + ey, fx - ox:] = stack[:, -1:, :1]
    if oy and ox:
        pad[:, fy - oy:, fx - ox:] = stack[:, :1, :1]
    return pad


def dynamic_background(patterns: np.ndarray, std: float | None = None,
                       truncate: float = 4.0) -> np.ndarray:
    """Gaussian-blurred patterns (float32), kikuchipy's frequency-domain filter on a stack."""
    stack, shape = _as_stack(patterns)
    iy, ix = stack.shape[1:]
    std = ix / 8 if std is None else std
    window = gaussian_window(std, truncate)
    wy, wx = window.shape
    fft_shape = (next_fast_len(iy + wy - 1, real=True), next_fast_len(ix + wx - 1, real=True))
    window_pad = np.zeros(fft_shape, dtype=np.float32)
    window_pad[:wy, :wx] = window[::-1, ::-1]
    transfer = rfft2(window_pad)
    padded = _pad_stack(stack.astype(np.float32, copy=False), fft_shape, (wy, wx))
    blurred = irfft2(rfft2(padded, axes=(1, 2)) * transfer, fft_shape, axes=(1, 2))
    ay, ax = (wy - 1) // 2, (wx - 1) // 2
    return np.ascontiguousarray(blurred[:, ay:ay + iy, ax:ax + ix], dtype=np.float32).reshape(shape)


def remove_dynamic_background(patterns: np.ndarray, operation: str = "subtract",
                              std: float | None = None, truncate: float = 4.0,
                              dtype_out=np.float32, out_range=(0.0, 1.0)) -> np.ndarray:
    """Subtract (or divide by) each pattern's own blurred copy, then stretch each pattern.

    ``std`` defaults to the pattern width / 8, as in kikuchipy.
    """
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got {operation!r}")
    stack, shape = _as_stack(patterns)
    stack = stack.astype(np.float32)
    background = dynamic_background(stack, std=std, truncate=truncate)
    if operation == "subtract":
        stack -= background
    else:
        stack /= background
    return _finish(stack, shape, dtype_out, out_range)


def known_region(shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(sy, sx)``: the pixels of a circular-masked pattern that hold the detector's
    signal, the mask less a 2 px rim (resampling softens the mask's edge by a pixel or two)."""
    from kdeconv.preprocess.mask import circular_mask

    return circular_mask(shape, radius=max(min(shape) / 2 - 2, 0.5))


# Outward fill of a masked pattern: normalised Gaussian averages at these fractions of its width,
# finest first, each filling the pixels it sees with at least FILL_MIN_WEIGHT of known signal (the
# last fills the rest). The fine steps continue the rim's own level; one blur at width / 8 alone
# pulls the rim towards the brighter centre. Measured on masked raw patterns, NCC inside the mask
# with the unmasked patterns' correction: 0.59 unfilled, 0.94 one step, 0.99 these.
FILL_WIDTH_FRACTIONS = (1 / 32, 1 / 16, 1 / 8)
FILL_MIN_WEIGHT = 0.02


@lru_cache(maxsize=16)
def fill_steps(shape: tuple[int, int]) -> tuple[tuple[float, np.ndarray, np.ndarray, np.ndarray], ...]:
    """``(std, known, weight, to_fill)`` per step of ``fill_outside_mask`` for patterns of
    ``shape``: the blur's std, the float32 map of pixels known before the step, its blur and the
    pixels the step fills (read-only, cached per shape)."""
    known = known_region(shape).astype(np.float32)
    steps = []
    for k, fraction in enumerate(FILL_WIDTH_FRACTIONS):
        std = max(shape[-1] * fraction, 0.5)
        weight = dynamic_background(known[None], std=std)[0]
        last = k == len(FILL_WIDTH_FRACTIONS) - 1
        to_fill = (known == 0) & ((weight > FILL_MIN_WEIGHT) | last)
        weight = np.maximum(weight, 1e-6)
        for array in (known, weight, to_fill):
            array.setflags(write=False)
        steps.append((std, known, weight, to_fill))
        known = np.maximum(known, to_fill.astype(np.float32))
    return tuple(steps)


def fill_outside_mask(patterns: np.ndarray) -> np.ndarray:
    """Circular-masked ``(n, sy, sx)`` patterns with the outside of the mask filled outward by
    normalised Gaussian averages of the signal inside it (``FILL_WIDTH_FRACTIONS``).

    Background removal blurs; on a masked pattern the zeros outside the mask would pull the
    blurred background down along the rim and print a bright ring into every pattern. Filled,
    the rim sees the detector's own background continued."""
    stack, shape = _as_stack(patterns)
    out = stack.astype(np.float32, copy=True)
    for std, known, weight, to_fill in fill_steps(tuple(out.shape[1:])):
        average = dynamic_background(out * known, std=std) / weight
        out[:, to_fill] = average[:, to_fill]
    return out.reshape(shape)


# A pixel of the map mean this many robust standard deviations below its 5x5 median is a dark
# fixed-pattern defect of the detector (dust on the phosphor, a dead pixel or corner), not a band.
# Measured on kikuchipy's real Ni map: at 6 the dust spots and dark corners, and no band.
DEFECT_Z = 6.0
DEFECT_WINDOW = 5


def static_background_from_mean(mean: np.ndarray, smooth_std: float | str | None,
                                keep_defects: bool = True, background: dict | None = None) -> np.ndarray:
    """The static background pattern (float32) from a map's mean pattern.

    Blurred (``"auto"``: std = width / 8) so that the bands of the map's few grains do not print
    into every pattern; but where the mean is sharply darker than around it (``defect_pixels``:
    dust, dead pixels and corners, the same on every pattern) the mean itself is kept, so
    subtracting it removes those defects too. A map whose recipe ``background`` windows its
    patterns (``mask: circle``) has its mean windowed alike.
    """
    from kdeconv.preprocess.mask import circular_mask, detect_masked, window_patterns

    mean = window_patterns(np.asarray(mean, dtype=np.float32), background)
    if smooth_std == "auto":
        smooth_std = mean.shape[-1] / 8
    if not smooth_std:
        return mean
    if min(mean.shape) >= 3 and detect_masked(mean[None], circular_mask(mean.shape))[0]:
        # a masked map's mean: blur the detector's background continued, not the mask's zeros
        mean = fill_outside_mask(mean[None])[0]
    blurred = dynamic_background(mean[None], std=smooth_std)[0]
    if keep_defects:
        defects = defect_pixels(mean)
        blurred[defects] = mean[defects]
    return blurred


def defect_pixels(mean: np.ndarray, z: float = DEFECT_Z) -> np.ndarray:
    """Boolean (sy, sx): pixels where a map's mean pattern lies more than ``z`` robust (MAD)
    standard deviations below its local median (a ``DEFECT_WINDOW`` square, which follows the
    background's curve and most of a band)."""
    from scipy.ndimage import median_filter

    mean = np.asarray(mean, np.float64)
    residual = mean - median_filter(mean, size=DEFECT_WINDOW, mode="nearest")
    centre = np.median(residual)
    spread = 1.4826 * np.median(np.abs(residual - centre))
    if spread <= 0:
        return np.zeros(residual.shape, bool)
    return residual - centre < -z * spread


# ---------------------------------------------------------------------------- raw or processed?

# Patterns "carry a detector background" when a clear share of their variance inside the detector
# lies at scales above a quarter of their width, or when their mean falls off from the centre to
# the rim: vendor processing removes both. Measured (share, falloff): raw real Ni 0.52, 0.78; raw
# simulated maps 0.03-0.08, 0.92-0.93; processed <= 0.01, >= 0.95 on maps of many grains (a
# 9-pattern map filtered with std = width / 3 gave 0.07, 0.86). The fine structure every pattern
# shares (fixed-pattern gain, dust, stuck pixels) is left out of the share: it is the camera's, and
# a raw map through a camera with strong gain read 0.03 with it (processed), 0.2 without.
# Removing a background that is not there costs little; leaving one in costs the separation, so
# doubtful maps count as raw.
RAW_LOWFREQ_SHARE = 0.05
RAW_FALLOFF = 0.93
# Masked maps: the plain sample mean's falloff. Measured: raw 0.64-0.94 (the flattest a camera with
# strong pixel gain), processed 0.965-1.05 on centred detectors (an off-centre PC reads ~1.02 raw,
# which the share catches).
RAW_FALLOFF_MASKED = 0.95


# A camera that sees a round phosphor screen records its corners dark but not zero; a vendor may
# fill a mask with a constant other than zero. Such a map is windowed (its raw patterns
# circular-masked) when at least SCREEN_MIN_SHARE of the pixels outside the inscribed circle see
# nothing: below SCREEN_DARK of the centre on the sample mean, or the same value in every sampled
# pattern. A raw detector background's corners read 0.3 or more of the centre (simulated widths
# 0.5-1.2; real Ni 0.6); stuck pixels are a few per thousand.
SCREEN_DARK = 0.1
SCREEN_MIN_SHARE = 0.05


# Patterns are signed when their 1st percentile lies below -SIGNED_SHARE of their largest
# magnitude (99th percentile of |v|): zero-mean patterns read about -0.7, a rescale to [-1, 1]
# -0.9; a raw camera's dark-subtracted noise dips a few thousandths below zero.
SIGNED_SHARE = 0.05


def signed(patterns: np.ndarray) -> bool:
    """True when patterns hold substantial negative values: software made them (kikuchipy's
    ``normalize_intensity``, a rescale to [-1, 1]); a detector counts from zero."""
    values = np.asarray(patterns, np.float32).reshape(-1)
    if values.size == 0 or float(values.min()) >= 0:
        return False
    low, top = np.percentile(values, 1), np.percentile(np.abs(values), 99)
    return bool(low < -SIGNED_SHARE * top)


def _centre_level(mean: np.ndarray) -> float:
    """A sample mean's level at the detector's centre (within 0.35 of the inscribed radius)."""
    from kdeconv.preprocess.mask import circular_mask

    return float(mean[circular_mask(mean.shape, radius=0.35 * min(mean.shape) / 2)].mean())


def _seen(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """``(mean, light, signed)`` of a sample ``(n, sy, sx)``: its mean (float64), where it sees
    something (bool; None when that cannot be told), and ``signed``. Light is at least
    ``SCREEN_DARK`` of the centre's level and not one value in every pattern (n >= 2); signed
    patterns have no zero level to be dark against, so there only the second counts."""
    is_signed = signed(stack)
    mean = stack.mean(axis=0, dtype=np.float64)
    varies = np.ptp(stack, axis=0) > 0 if len(stack) >= 2 else None
    if is_signed:
        return mean, varies, True
    centre = _centre_level(mean)
    if centre <= 0:
        return mean, None, False
    light = mean >= SCREEN_DARK * centre
    return mean, light if varies is None else light & varies, False


def dead_outside_share(patterns: np.ndarray) -> float:
    """Share of the pixels outside the inscribed circle that see nothing in a sample ``(n, sy,
    sx)``: their mean below ``SCREEN_DARK`` of the centre's (radius <= 0.35 of the circle's), or
    one value in every pattern (n >= 2)."""
    stack = np.asarray(patterns, np.float32).reshape((-1,) + np.shape(patterns)[-2:])
    if min(stack.shape[1:]) < 3 or len(stack) == 0:
        return 0.0
    return _dead_outside(_seen(stack)[1])


def _dead_outside(light: np.ndarray | None) -> float:
    from kdeconv.preprocess.mask import circular_mask

    if light is None:
        return 0.0
    outside = ~circular_mask(light.shape)
    return float((~light[outside]).mean()) if outside.any() else 0.0


def dead_rim_share(mean: np.ndarray) -> float:
    """Share of the inscribed circle's rim (0.8-0.97 of its radius) where a sample mean (sy, sx)
    is below ``SCREEN_DARK`` of its centre: a screen smaller than the circle, or off its centre,
    which masking with the inscribed circle does not cover."""
    from kdeconv.preprocess.mask import circular_mask

    mean = np.asarray(mean, np.float64)
    if min(mean.shape) < 8:
        return 0.0
    half = min(mean.shape) / 2
    rim = circular_mask(mean.shape, radius=0.97 * half) & ~circular_mask(mean.shape, radius=0.8 * half)
    centre = _centre_level(mean)
    if centre <= 0:
        return 0.0
    return float((mean[rim] < SCREEN_DARK * centre).mean())


# A screen is cut to when its disc (fitted to the pixels that see light) matches them (IoU) at
# least this well, lies inside the pattern, and is smaller than the inscribed circle or off its
# centre by these margins; otherwise masking with the inscribed circle is the window.
SCREEN_FIT_IOU = 0.9
SCREEN_SMALLER = 0.96
SCREEN_OFF_CENTRE_PX = 1.5
# A screen's edge, against a background's smooth falloff (``sharp_edge``).
SCREEN_EDGE_DROP = 3.0
SCREEN_EDGE_STEEPER = 4.0


def sharp_edge(mean: np.ndarray, cy: float, cx: float, radius: float) -> bool:
    """Whether the light of a sample mean ``(sy, sx)`` drops at the circle (cy, cx, radius) as at a
    screen's edge: at least SCREEN_EDGE_DROP-fold from 2-4 px inside to 2-4 px outside, and at
    least SCREEN_EDGE_STEEPER times as steeply (in log) as from 6-8 to 2-4 px inside. A smooth
    background reads 1.5-1.8 there (even one that falls below SCREEN_DARK in the corners);
    simulated screens 8-45, a zero mask infinitely."""
    y, x = np.mgrid[:mean.shape[0], :mean.shape[1]]
    r = np.hypot(y - cy, x - cx) - radius

    def ring(low, high):
        part = mean[(r >= low) & (r <= high)]
        return float(part.mean()) if part.size else 0.0

    deep, rim, beyond = ring(-8, -6), ring(-4, -2), ring(2, 4)
    if rim <= 0:
        return False
    across = rim / beyond if beyond > 0 else np.inf
    inside = max(deep / rim, 1.0 + 1e-6)
    return bool(across >= SCREEN_EDGE_DROP and np.log(across) >= SCREEN_EDGE_STEEPER * np.log(inside))


def find_screen(patterns: np.ndarray) -> list[int] | None:
    """``[top, left, side]`` of the square around the window a round screen leaves in the
    patterns of a sample ``(n, sy, sx)`` when that is not their inscribed circle (a screen smaller
    than the pattern, or off its centre), else None. Light is what ``dead_outside_share`` does not
    call dead. A screen seen whole is the disc of the light's area and centroid; one the pattern
    clips is fitted to its edge inside the pattern (``_edge_circle``), and its window is the
    largest circle inside both (``_largest_circle_within``). The disc must match the light (IoU),
    its edge must be sharp (``sharp_edge``), and its soft last pixel is left out."""
    stack = np.asarray(patterns, np.float32).reshape((-1,) + np.shape(patterns)[-2:])
    if min(stack.shape[1:]) < 16 or len(stack) == 0:
        return None
    return _screen(*_seen(stack))


def _screen(mean: np.ndarray, light: np.ndarray | None, is_signed: bool) -> list[int] | None:
    """``find_screen`` from a sample's ``_seen``."""
    from scipy.ndimage import binary_fill_holes

    sy, sx = mean.shape
    if light is None or min(sy, sx) < 16:
        return None
    # a screen's light has no holes: dark spots inside it are dust or dead pixels, and their edges
    # would pull the fitted circle in (real Ni, vendor-masked: a 3x7 px spot cut 60x60 to 55x55)
    light = binary_fill_holes(light)
    half = min(sy, sx) / 2
    y, x = np.mgrid[:sy, :sx]
    area = int(light.sum())
    if area == light.size or area < 64:
        return None
    # The screen's circle: the disc of the light's area and centroid when that lies whole inside
    # the pattern; one the pattern clips is fitted to its edge inside the pattern instead.
    cy, cx = y[light].mean(), x[light].mean()
    radius = np.sqrt(area / np.pi)
    whole = min(cy, cx) - radius >= -0.5 and cy + radius <= sy - 0.5 and cx + radius <= sx - 0.5
    if not whole:
        fitted = _edge_circle(light)
        if fitted is None:
            return None
        cy, cx, radius = fitted
    disc = (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2  # clipped by the pattern as the light is
    if (light & disc).sum() / (light | disc).sum() < SCREEN_FIT_IOU:
        return None
    if not is_signed and not sharp_edge(mean, cy, cx, radius):
        return None  # a detector background falling off smoothly, not a screen's edge
    if not whole:  # the window: the largest circle inside both the screen and the pattern
        cy, cx, radius = _largest_circle_within(cy, cx, radius, (sy, sx))
    side = int(np.floor(2 * (radius - 1.0)))
    top, left = int(round(cy - (side - 1) / 2)), int(round(cx - (side - 1) / 2))
    if side < 16 or top < 0 or left < 0 or top + side > sy or left + side > sx:
        return None
    off = np.hypot(cy - (sy - 1) / 2, cx - (sx - 1) / 2)
    if radius >= SCREEN_SMALLER * half and off <= SCREEN_OFF_CENTRE_PX:
        return None  # the inscribed circle is this screen
    return [top, left, side]


def _edge_circle(light: np.ndarray) -> tuple[float, float, float] | None:
    """(cy, cx, radius) of the circle fitted (Kasa's least squares) to the edge of the ``light``
    region inside the pattern (its pixels with a dark 4-neighbour; the pattern's border is no
    edge), or None with too few edge pixels."""
    padded = np.pad(light, 1, constant_values=True)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    ey, ex = np.nonzero(light & ~inner)
    if len(ey) < 20:
        return None
    design = np.stack([ex, ey, np.ones(len(ex))], axis=1).astype(np.float64)
    (d, e, f), *_ = np.linalg.lstsq(design, -(ex.astype(np.float64) ** 2 + ey ** 2.0), rcond=None)
    cx, cy = -d / 2, -e / 2
    squared = cx * cx + cy * cy - f
    return (float(cy), float(cx), float(np.sqrt(squared))) if squared > 0 else None


def _largest_circle_within(cy: float, cx: float, radius: float,
                           shape: tuple[int, int]) -> tuple[float, float, float]:
    """(cy, cx, radius) of the largest circle inside both the circle given and a pattern of
    ``shape`` (the inscribed circle's conventions: a pattern's edge lies half a pixel beyond its
    last pixel centre), searched on a half-pixel grid; of equal ones, the nearest the screen's
    centre."""
    sy, sx = shape
    py, px = np.meshgrid(np.arange(0, sy, 0.5), np.arange(0, sx, 0.5), indexing="ij")
    distance = np.hypot(py - cy, px - cx)
    room = np.minimum.reduce([radius - distance, py + 0.5, sy - 0.5 - py, px + 0.5, sx - 0.5 - px])
    best = np.unravel_index(np.argmax(room - 1e-6 * distance), room.shape)
    return float(py[best]), float(px[best]), float(room[best])


def decide_mask(patterns: np.ndarray) -> tuple[str, dict[str, Any]]:
    """``("circle", evidence)`` for a sample ``(n, sy, sx)`` of a map whose corners see nothing
    but are not zero-masked (a round screen, a mask filled with a constant), or that sees a round
    screen smaller than its inscribed circle or off its centre (``find_screen``; zero-masked or
    not), else ``("none", evidence)``: maps masked to the inscribed circle keep their own zeros.
    ``evidence``: ``dead_outside`` (``dead_outside_share``), the share already ``masked``,
    ``dead_rim`` (``dead_rim_share``) and ``screen`` (``find_screen``)."""
    from kdeconv.preprocess.mask import circular_mask, detect_masked

    stack = np.asarray(patterns, dtype=np.float32)
    stack = stack.reshape((-1,) + stack.shape[-2:])
    flat = stack.reshape(len(stack), -1)
    stack = stack[flat.max(axis=1) > flat.min(axis=1)]  # blank frames say nothing
    if len(stack) == 0 or min(stack.shape[1:]) < 3:
        return "none", {"dead_outside": 0.0, "masked": 0.0, "dead_rim": 0.0, "screen": None}
    mean, light, is_signed = seen = _seen(stack)  # once, for every measure below
    evidence = {"dead_outside": _dead_outside(light),
                "masked": float(detect_masked(stack, circular_mask(stack.shape[1:])).mean()),
                "dead_rim": 0.0 if is_signed else dead_rim_share(mean),
                "screen": _screen(*seen)}
    screen = evidence["dead_outside"] >= SCREEN_MIN_SHARE and evidence["masked"] <= 0.5
    return ("circle" if screen or evidence["screen"] else "none"), evidence


# Larger patterns are judged area-binned to about this shorter side, the model's working scale
# (what a camera of that size records; the thresholds were measured at 60-160 px). At full size
# the blurs took 15 s for 256 patterns of 480x640; binned, the decisions are the same.
EVIDENCE_SIDE = 160
EVIDENCE_TARGET = 120


def _binned_for_evidence(stack: np.ndarray, masked: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``stack`` (n, sy, sx) area-averaged to a shorter side of EVIDENCE_TARGET (aspect kept);
    its masked patterns zeroed outside the mask again at that size, as the kernels do."""
    from kdeconv.preprocess.mask import circular_mask
    from kdeconv.preprocess.resample import resample

    sy, sx = stack.shape[1:]
    factor = min(sy, sx) / EVIDENCE_TARGET
    shape = (max(1, round(sy / factor)), max(1, round(sx / factor)))
    binned = resample(stack, shape)
    if masked.any():
        binned[masked] *= circular_mask(shape)
    return binned, shape


def background_evidence(patterns: np.ndarray) -> dict[str, float]:
    """Measures that tell raw patterns (detector background present) from processed ones.

    ``patterns`` is a sample ``(n, sy, sx)`` of the map (a few hundred spread over it).
    ``lowfreq_share``: median share of a pattern's variance in its Gaussian blur (std = width / 4)
    inside the detector, the fine structure all patterns share (the camera's) left out;
    ``falloff``: the blurred sample mean (the plain one for masked maps) on a ring at 0.75-0.95
    of the detector radius over its centre; ``masked``: share of patterns already circular-masked;
    ``signed``: the sample holds substantial negative values (``signed``). Patterns larger
    than EVIDENCE_SIDE are measured binned to the model's scale (``_binned_for_evidence``).
    """
    from kdeconv.preprocess.mask import circular_mask, detect_masked

    stack = np.asarray(patterns, dtype=np.float32)
    stack = stack.reshape((-1,) + stack.shape[-2:])
    shape = stack.shape[1:]
    flat = stack.reshape(len(stack), -1)
    stack = stack[flat.max(axis=1) > flat.min(axis=1)]  # blank frames say nothing
    if len(stack) == 0:
        return {"lowfreq_share": 0.0, "falloff": 1.0, "masked": 0.0, "signed": False, "n": 0}
    masked = detect_masked(stack, circular_mask(shape))  # at the patterns' own size, as the kernels
    if min(shape) > EVIDENCE_SIDE:
        stack, shape = _binned_for_evidence(stack, masked)
    mask = circular_mask(shape)
    inner = circular_mask(shape, radius=0.8 * min(shape) / 2)
    std = shape[-1] / 4  # above any vendor's dynamic filter: only a detector background is this smooth
    if masked.mean() > 0.5:
        # blur inside the detector only, so the mask edge does not read as background
        weight = dynamic_background(mask[None].astype(np.float32), std=std)[0]
        smooth = dynamic_background(stack * mask, std=std) / np.maximum(weight, 1e-6)
    else:
        smooth = dynamic_background(stack, std=std)
    fine = stack - smooth
    fine -= fine.mean(axis=0)  # the fixed pattern is the camera's, not the crystal's
    s_in, f_in = smooth[:, inner], fine[:, inner]
    s_var, f_var = s_in.var(axis=1), f_in.var(axis=1)
    share = s_var / np.maximum(s_var + f_var, 1e-12)
    # the sample mean's outer ring over its centre
    radius = np.hypot(*np.meshgrid(np.arange(shape[0]) - (shape[0] - 1) / 2,
                                   np.arange(shape[1]) - (shape[1] - 1) / 2, indexing="ij"))
    radius /= min(shape) / 2
    # On masked patterns the normalised blur pulls the rim towards the centre (raw maps read 0.96
    # instead of 0.88-0.92); the ring lies inside the mask, so take the plain sample mean there.
    mean = stack.mean(axis=0) if masked.mean() > 0.5 else smooth.mean(axis=0)
    centre = mean[radius <= 0.35].mean()
    ring = mean[(radius >= 0.75) & (radius <= 0.95)].mean()
    falloff = float(ring / centre) if abs(centre) > 1e-12 else 1.0
    return {"lowfreq_share": float(np.median(share)), "falloff": falloff,
            "masked": float(masked.mean()), "signed": signed(stack), "n": int(len(stack))}


def decide_input(sample: np.ndarray | None, mode: str = "auto", mask: str = "auto",
                 screen=None) -> dict[str, Any]:
    """What a map's patterns need before a model, decided on a ``sample`` (n, sy, sx) of them
    where ``mode`` or ``mask`` is "auto" (else the sample may be None): ``{"mode": "raw" |
    "processed", "mask": "circle" | "none", "screen": [top, left, side] | None}``, with the
    evidence of what was decided. A ``screen`` given is the window (mask "circle"). The mask
    comes first and the background is decided on the masked sample, as the model's steps see it."""
    from kdeconv.preprocess.mask import window_patterns

    decision: dict[str, Any] = {"mask": mask, "screen": None if screen is None else list(screen)}
    if screen is not None:
        decision["mask"] = "circle"
    elif mask == "auto":
        decision["mask"], decision["mask_evidence"] = decide_mask(sample)
        decision["screen"] = decision["mask_evidence"]["screen"]
    decision["mode"] = mode
    if mode == "auto":
        decision["mode"], evidence = decide_background(window_patterns(sample, decision))
        decision.update(evidence=evidence, rule=decision_rule(evidence))
    return decision


def decision_rule(evidence: dict[str, float]) -> str:
    """The rule ``decide_background`` applied to this evidence, in words (recorded in attrs)."""
    return (f"raw when lowfreq_share >= {RAW_LOWFREQ_SHARE} or falloff <= {_falloff_bar(evidence)}"
            + (" (masked: plain mean)" if evidence["masked"] > 0.5 else "")
            + ", unless the patterns hold negative values (made by software: processed)")


def _falloff_bar(evidence: dict[str, float]) -> float:
    return RAW_FALLOFF_MASKED if evidence["masked"] > 0.5 else RAW_FALLOFF


def background_steps(background: dict[str, Any]) -> tuple[bool, bool]:
    """``(static, dynamic)``: which removal steps a map's background plan asks for (none for
    vendor-processed patterns), as the numpy and the torch kernels both apply them."""
    processed = background.get("mode") == "processed"
    static = background.get("static", "none") != "none" and not processed
    dynamic = bool(background.get("dynamic", False)) and not processed
    return static, dynamic


def decide_background(patterns: np.ndarray) -> tuple[str, dict[str, float]]:
    """``("raw", evidence)`` when a sample of a map still carries the detector background (then
    static and dynamic removal apply), else ``("processed", evidence)`` (vendor-corrected)."""
    evidence = background_evidence(patterns)
    raw = evidence["lowfreq_share"] >= RAW_LOWFREQ_SHARE or evidence["falloff"] <= _falloff_bar(evidence)
    return ("raw" if raw and not evidence["signed"] else "processed"), evidence
