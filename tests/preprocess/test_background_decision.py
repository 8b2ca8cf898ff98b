"""`background: auto`: raw maps (detector background present) against vendor-processed ones."""

import numpy as np
import pytest

from kdeconv.preprocess import circular_mask
from kdeconv.preprocess.background import (
    decide_background,
    decide_mask,
    dynamic_background,
    remove_dynamic_background,
    remove_static_background,
)


def _raw_map(n=64, size=60, signal=0.3, seed=0, width=0.6, gain=0.0, width_px=None):
    """Kikuchi-like band patterns (random orientations) on a bright-centre detector background,
    through a camera whose pixels differ in gain by ``gain`` (std); ``width_px`` makes the
    detector wider than high (coordinates and background in heights)."""
    rng = np.random.default_rng(seed)
    sx = width_px or size
    y, x = np.mgrid[:size, :sx] / size
    y, x = y - 0.5, x - sx / size / 2
    background = np.exp(-((y + 0.05) ** 2 + x**2) / (2 * width**2))
    pixel_gain = 1 + gain * np.random.default_rng(seed + 1).normal(size=x.shape)
    background = background * np.clip(pixel_gain, 0.05, None)
    out = np.empty((n, size, sx), np.float32)
    for i in range(n):
        bands = np.zeros((size, sx))
        for _ in range(6):
            theta, offset = rng.uniform(0, np.pi), rng.uniform(-0.4, 0.4)
            d = x * np.cos(theta) + y * np.sin(theta) - offset
            bands += np.abs(d) < rng.uniform(0.02, 0.05)
        counts = 2000 * background * ((1 - signal) + signal * bands / 3)
        out[i] = rng.poisson(counts)
    return out


def _processed(stack, mask=True, bits8=True):
    mean = stack.mean(0)
    static = dynamic_background(mean[None], std=stack.shape[-1] / 8)[0]
    out = remove_dynamic_background(remove_static_background(stack, static))
    if bits8:
        out = np.rint(out * 255).astype(np.uint8)
    return out * circular_mask(out.shape[-2:]) if mask else out


@pytest.mark.parametrize("signal", [0.1, 0.3, 0.6])
def test_a_raw_map_is_raw(signal):
    mode, evidence = decide_background(_raw_map(signal=signal))
    assert mode == "raw", evidence


def test_a_raw_map_of_a_wide_detector_is_raw_and_its_processed_copy_is_not():
    raw = _raw_map(size=60, width_px=80)
    mode, evidence = decide_background(raw)
    assert mode == "raw", evidence
    assert decide_background(_processed(raw))[0] == "processed"


@pytest.mark.parametrize("mask, bits8", [(True, True), (False, True), (False, False)])
def test_the_same_map_processed_is_processed(mask, bits8):
    mode, evidence = decide_background(_processed(_raw_map(), mask, bits8))
    assert mode == "processed", evidence
    assert evidence["masked"] == (1.0 if mask else 0.0)


def test_a_flat_raw_map_through_a_camera_with_strong_pixel_gain_is_raw():
    # a broad background barely falls off to the rim; the pixels' gain is fine structure every
    # pattern shares, which is the camera's and must not pass for the crystal's bands
    raw = _raw_map(signal=0.2, width=1.2, gain=0.15)
    mode, evidence = decide_background(raw)
    assert evidence["falloff"] > 0.93
    assert mode == "raw", evidence
    assert decide_background(_processed(raw))[0] == "processed"


def test_real_raw_nickel_patterns_are_raw_and_their_processed_copy_is_not():
    import kikuchipy as kp

    raw = kp.data.nickel_ebsd_small().data.reshape(-1, 60, 60)
    assert decide_background(raw)[0] == "raw"
    assert decide_background(_processed(raw.astype(np.float32)))[0] == "processed"


def test_blank_frames_are_ignored():
    stack = _raw_map(n=16)
    with_blank = np.concatenate([stack, np.zeros((8, 60, 60), np.float32)])
    assert decide_background(with_blank)[1]["n"] == 16
    assert decide_background(np.zeros((4, 60, 60)))[1]["n"] == 0


@pytest.mark.parametrize("width", [0.8, 1.0])
def test_a_raw_map_with_only_the_circular_mask_is_raw(width):
    # broad backgrounds, strong bands (share ~0.03): the normalised blur read their rim at
    # 0.95-0.96 of the centre (processed); the ring lies inside the mask, so the plain sample mean
    # measures the detector's falloff (0.84-0.90)
    raw = _raw_map(signal=0.6, width=width) * circular_mask((60, 60))
    mode, evidence = decide_background(raw)
    assert evidence["masked"] == 1.0 and evidence["lowfreq_share"] < 0.05
    assert evidence["falloff"] < 0.92
    assert mode == "raw", evidence


def _screened(stack, radius=1.15, floor=0.03, offset=(0.0, 0.0)):
    """``stack`` seen through a round phosphor screen (radius and centre offset in half shorter
    sides; by default wider than the inscribed circle): light falls to ``floor`` beyond its edge
    (the corners dark, but not zero)."""
    sy, sx = stack.shape[-2:]
    half = min(sy, sx) / 2
    cy, cx = (sy - 1) / 2 + offset[0] * half, (sx - 1) / 2 + offset[1] * half
    r = np.hypot(*np.meshgrid(np.arange(sy) - cy, np.arange(sx) - cx, indexing="ij"))
    window = np.where(r <= radius * half, 1.0, floor)
    return (stack * window).astype(np.float32)


@pytest.mark.parametrize("width_px", [None, 80])
def test_a_round_screens_dark_corners_are_masked_and_nothing_else_is(width_px):
    raw = _raw_map(width_px=width_px)
    mode, evidence = decide_mask(_screened(raw))
    assert mode == "circle", evidence
    # a raw detector background (even a narrow one), a processed map, one already masked: none
    for stack in (raw, _raw_map(width=0.5, width_px=width_px), _processed(raw, mask=False),
                  _processed(raw, mask=True)):
        assert decide_mask(stack)[0] == "none"
    # the background is then decided on the windowed patterns: still raw
    assert decide_background(_screened(raw) * circular_mask(raw.shape[-2:]))[0] == "raw"


def test_a_mask_filled_with_a_constant_is_masked_again_with_zeros():
    # a vendor export whose outside is mid-grey: the same value in every pattern
    processed = _processed(_raw_map(), mask=False)
    grey = np.where(circular_mask(processed.shape[-2:]), processed, np.uint8(128))
    mode, evidence = decide_mask(grey)
    assert mode == "circle" and evidence["dead_outside"] == 1.0, evidence
    assert decide_background(grey * circular_mask(grey.shape[-2:]))[0] == "processed"


def test_a_windowed_recipe_masks_the_raw_patterns_and_their_mean():
    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.separate.chunk import preprocess_patterns

    screened = _screened(_raw_map(n=8))
    mask = circular_mask(screened.shape[-2:])
    recipe = {"mode": "raw", "static": "map_mean", "static_operation": "subtract", "dynamic": True,
              "dynamic_operation": "subtract", "dynamic_std": None}
    windowed = {**recipe, "mask": "circle"}
    static = static_background_from_mean(screened.mean(0), "auto", background=windowed)
    np.testing.assert_array_equal(static, static_background_from_mean((screened * mask).mean(0), "auto"))
    np.testing.assert_array_equal(preprocess_patterns(screened, windowed, static),
                                  preprocess_patterns(screened * mask, recipe, static))
    assert (preprocess_patterns(screened, windowed, static)[:, ~mask] == 0).all()


@pytest.mark.parametrize("width_px,radius,offset", [(None, 0.85, (0.0, 0.0)), (80, 0.85, (0.0, 0.0)),
                                                    (None, 0.75, (0.15, -0.1)), (80, 0.9, (0.0, 0.2))])
def test_a_round_screen_inside_the_pattern_is_found_where_it_lies(width_px, radius, offset):
    from kdeconv.preprocess.background import find_screen

    raw = _raw_map(width_px=width_px)
    sy, sx = raw.shape[-2:]
    half = sy / 2
    mode, evidence = decide_mask(_screened(raw, radius=radius, offset=offset))
    assert mode == "circle" and evidence["screen"] is not None, evidence
    top, left, side = evidence["screen"]
    # the square holds the screen: its side the diameter less its soft last pixel (and rounding),
    # its centre the screen's (within a pixel)
    assert -3.5 <= side - 2 * radius * half <= 1
    assert abs(top + (side - 1) / 2 - ((sy - 1) / 2 + offset[0] * half)) <= 1
    assert abs(left + (side - 1) / 2 - ((sx - 1) / 2 + offset[1] * half)) <= 1
    # the same map already zero-masked to that circle: found alike
    zeroed = _screened(raw, radius=radius, floor=0.0, offset=offset)
    assert find_screen(zeroed) == evidence["screen"]


def test_no_screen_is_found_where_the_inscribed_circle_is_the_window():
    from kdeconv.preprocess.background import find_screen

    raw = _raw_map()
    for stack in (raw, _raw_map(width=0.5), _processed(raw, mask=False), _processed(raw, mask=True),
                  _screened(raw), _screened(raw, radius=1.0), _screened(_raw_map(width_px=80))):
        assert find_screen(stack) is None
    # dark spots inside the screen (dust, dead pixels) are no screen's edge, here one near the rim
    # of a vendor-masked map
    spotted = _processed(raw, mask=True)
    spotted[:, 31:34, 49:56] = 0
    assert find_screen(spotted) is None
    # a background so narrow that its corners see nothing: its 0.1 isophote is a circle, but the
    # light falls off smoothly there, not at a screen's edge
    for width in (0.15, 0.2):
        narrow = _raw_map(width=width, size=120)
        assert narrow.mean(0)[0, 0] < 0.01 * narrow.mean(0)[60, 60]
        assert find_screen(narrow) is None


@pytest.mark.parametrize("width_px,radius,offset", [(None, 0.88, (0.0, 0.3)), (None, 1.1, (0.0, 0.2)),
                                                    (80, 1.05, (0.0, 0.3))])
def test_a_screen_the_pattern_clips_is_windowed_by_the_largest_circle_inside_both(width_px, radius, offset):
    from kdeconv.preprocess.mask import screen_mask

    raw = _raw_map(width_px=width_px)
    screened = _screened(raw, radius=radius, offset=offset)
    mode, evidence = decide_mask(screened)
    assert mode == "circle" and evidence["screen"] is not None, evidence
    sy, sx = raw.shape[-2:]
    half = sy / 2
    window = screen_mask((sy, sx), {"mask": "circle", "screen": evidence["screen"]})
    y, x = np.mgrid[:sy, :sx]
    on_screen = np.hypot(y - ((sy - 1) / 2 + offset[0] * half), x - ((sx - 1) / 2 + offset[1] * half))
    assert on_screen[window].max() <= radius * half  # nothing dark inside the window
    assert window.sum() > 0.55 * np.pi * min(radius * half, half) ** 2  # and most of what can be


def test_a_dark_edge_that_is_not_round_is_warned_of_not_masked_over():
    import dask.array as da

    from kdeconv.config.separate import BackgroundConfig
    from kdeconv.preprocess.resample import WorkingRange
    from kdeconv.separate.inputs import ModelInputPlan, resolve_background

    raw = _raw_map()
    shadow = raw.copy()
    shadow[:, :14] *= 0.02  # a shadow across the top of the screen
    for stack, dark_rim in ((shadow, True), (_screened(raw, radius=0.88, offset=(0.0, 0.3)), False),
                            (_screened(raw, radius=0.88), False), (_screened(raw), False), (raw, False)):
        recipe, decision = resolve_background(da.from_array(stack, chunks=(16, 60, 60)), BackgroundConfig())
        plan = ModelInputPlan(recipe, decision, (60, 60), (60, 60), WorkingRange(60, 120, 120))
        assert (plan.warning() is not None) == dark_rim, decision
        if dark_rim:
            assert plan.warning().startswith("Warning: ") and "not a round screen's edge" in plan.warning()


def test_a_screen_inside_the_pattern_is_cut_to_and_said():
    import dask.array as da

    from kdeconv.config.separate import BackgroundConfig
    from kdeconv.preprocess.resample import working_range_of, working_shape
    from kdeconv.separate.inputs import plan_model_input

    stack = _screened(_raw_map(), radius=0.8)
    src = da.from_array(stack, chunks=(16, 60, 60))
    plan = plan_model_input(src, {}, BackgroundConfig())
    side = plan.background["screen"][2]
    assert plan.background["mask"] == "circle" and plan.screen_shape == (side, side)
    assert plan.work_shape == working_shape((side, side), working_range_of({}), None)
    assert f"cut to the screen's {side}x{side} square" in plan.describe()
    assert plan.working_record()["screen"] == plan.background["screen"]
    # given by hand: used as given, and checked against the patterns
    given = plan_model_input(src, {}, BackgroundConfig(screen=(10, 10, 40)))
    assert given.background["screen"] == [10, 10, 40] and "as asked" in given.describe()
    from kdeconv.errors import InputError

    with pytest.raises(InputError, match="does not fit 60x60"):
        plan_model_input(src, {}, BackgroundConfig(screen=(30, 30, 40)))


def test_patterns_software_made_signed_are_processed_and_see_no_screen():
    # kikuchipy's normalize_intensity (zero mean, unit std) and a rescale to [-1, 1]: no zero level
    from kdeconv.preprocess.background import decide_input

    processed = _processed(_raw_map(), mask=False, bits8=False).astype(np.float32)
    flat = processed.reshape(len(processed), -1)
    normalized = ((flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)).reshape(processed.shape)
    rescaled = 2 * processed - 1
    for stack in (normalized, rescaled):
        decision = decide_input(stack)
        assert decision["mode"] == "processed" and decision["evidence"]["signed"], decision
        assert decision["mask"] == "none" and decision["screen"] is None
        assert decision["mask_evidence"]["dead_rim"] == 0.0


def test_a_raw_map_with_its_dark_level_subtracted_is_still_raw():
    # a camera's dark frame subtracted: its noise dips a little below zero
    raw = _raw_map()
    dark = raw - np.float32(raw.min() + 30)
    assert dark.min() < 0
    mode, evidence = decide_background(dark)
    assert mode == "raw" and not evidence["signed"], evidence
    assert decide_mask(dark)[0] == "none"


def test_large_patterns_are_judged_binned_to_the_models_scale():
    from kdeconv.preprocess.background import background_evidence
    from kdeconv.preprocess.resample import resample

    raw = _raw_map(n=16, size=480)
    evidence = background_evidence(raw)
    assert evidence == background_evidence(resample(raw, (120, 120)))
    assert decide_background(raw)[0] == "raw"
    processed = _processed(raw)  # masked: the mask is found at full size, then kept when binned
    assert background_evidence(processed)["masked"] == 1.0
    assert decide_background(processed)[0] == "processed"
