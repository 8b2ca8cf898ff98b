"""Choosing the shipped model on the map: B should look like a neighbouring pattern of another crystal."""

from __future__ import annotations

import numpy as np
import pytest

import kdeconv.model as model
from kdeconv.preprocess.mask import signal_pixels
from kdeconv.separate.model_choice import (
    MIN_PIXELS,
    choose_shipped_model,
    describe_model_choice,
    neighbour_support,
)


def two_grain_map(ny=12, nx=12, side=24, seed=0):
    """Left half grain P, right half grain Q; the two middle columns mix them 60/40 and 40/60."""
    rng = np.random.default_rng(seed)
    p, q = rng.random((2, side, side)).astype(np.float32)
    grain = np.zeros((ny, nx), dtype=int)
    grain[:, nx // 2:] = 1
    patterns = np.where(grain[..., None, None] == 0, p, q).astype(np.float32)
    mixed = [(y, x) for y in range(ny) for x in (nx // 2 - 1, nx // 2)]
    for y, x in mixed:
        wq = 0.4 if x < nx // 2 else 0.6
        patterns[y, x] = (1 - wq) * p + wq * q
    return patterns, p, q, mixed


BACKGROUND = {"static": "none", "dynamic": False, "mask": "none", "screen": None}
VOTE = dict(device="cpu", precision="fp32", batch_size=None, residual_pass=None)


def two_grain_outputs(patterns, p, q, mixed, wrong_scale=1.0):
    """What a model would return on ``two_grain_map``: A the pixel's dominant grain, B the
    other grain (right) or noise (wrong, times ``wrong_scale``), weights 0.6 / 0.4 where mixed."""
    ny, nx = patterns.shape[:2]
    left = np.broadcast_to((np.arange(nx) < nx // 2)[None, :, None, None], patterns.shape)
    a, b_right = np.where(left, p, q), np.where(left, q, p)
    b_wrong = np.random.default_rng(2).random(patterns.shape).astype(np.float32) * wrong_scale
    w = np.zeros((ny, nx, 2), np.float32)
    w[..., 0] = 1
    for y, x in mixed:
        w[y, x] = (0.6, 0.4)
    return a, b_right, b_wrong, w


def test_support_is_high_for_the_neighbours_crystal_and_low_otherwise():
    patterns, p, q, mixed = two_grain_map()
    pixels = np.array([(y, x) for y, x in mixed if x < 6])  # A is P there, B should be Q
    a = np.broadcast_to(p, patterns.shape).copy()
    right = np.broadcast_to(q, patterns.shape).copy()
    noise = np.random.default_rng(1).random(patterns.shape).astype(np.float32)
    assert neighbour_support(patterns, a, right, pixels) == pytest.approx(1.0, abs=1e-6)
    assert neighbour_support(patterns, a, noise, pixels).max() < 0.3
    # B that repeats A's crystal finds no support: the neighbours like A are not B's candidates
    assert neighbour_support(patterns, a, a, pixels).max() < 0.3


def fake_block(outputs, calls=None):
    """A stand-in for the driver's per-block task: each shipped model returns its own A, B,
    weights; ``calls`` collects the checkpoints it was called with."""
    def separate_block(block, *, checkpoint, **_):
        if calls is not None:
            calls.append(checkpoint)
        return outputs["broad" if checkpoint == str(model.BROAD_LOOKS_CHECKPOINT) else "default"]
    return separate_block


@pytest.fixture
def no_small_patterns_model(tmp_path, monkeypatch):
    """The stand-in maps' 24 px patterns would go to the small-pattern model: take it away."""
    monkeypatch.setattr(model, "SMALL_PATTERNS_CHECKPOINT", tmp_path / "missing.pt")


def test_the_model_whose_b_matches_the_map_is_chosen(no_small_patterns_model):
    patterns, p, q, mixed = two_grain_map(ny=12, nx=12)
    a, b_right, b_wrong, w = two_grain_outputs(patterns, p, q, mixed)
    background, kwargs = BACKGROUND, VOTE
    assert len(mixed) >= MIN_PIXELS

    broad_right = fake_block({"default": (a, b_wrong, w), "broad": (a, b_right, w)})
    record = choose_shipped_model(patterns, background, None, separate_block=broad_right, **kwargs)
    assert record["checkpoint"] == str(model.BROAD_LOOKS_CHECKPOINT)
    assert record["pixels"] == len(mixed) and record["broad_looks_wins"] == 1.0
    assert "chosen over the default model" in describe_model_choice(record)

    default_right = fake_block({"default": (a, b_right, w), "broad": (a, b_wrong, w)})
    record = choose_shipped_model(patterns, background, None, separate_block=default_right, **kwargs)
    assert record["checkpoint"] is None and record["broad_looks_wins"] == 0.0
    assert "chosen over the broad-looks model" in describe_model_choice(record)


def test_a_vendor_mask_does_not_make_every_crystal_alike(no_small_patterns_model):
    """Outside a vendor's circular mask every pattern is 0: compared there too, grains P and Q
    would correlate and no neighbour would be 'unlike A'; the vote compares inside only."""
    patterns, p, q, mixed = two_grain_map(ny=12, nx=12)
    side = patterns.shape[-1]
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    circle = np.hypot(yy, xx) <= side / 2
    patterns, p, q = (x * circle for x in (patterns, p + 1, q + 1))  # bright discs on black
    patterns = patterns + circle * 1.0
    np.testing.assert_array_equal(signal_pixels(patterns), circle)
    a, b_right, b_wrong, w = two_grain_outputs(patterns, p, q, mixed, wrong_scale=circle)
    pixels = np.array([(y, x) for y, x in mixed if x < patterns.shape[1] // 2])
    assert neighbour_support(patterns, a, b_right, pixels).max() == 0.0  # all neighbours "like A"
    assert neighbour_support(patterns, a, b_right, pixels, mask=circle) == pytest.approx(1.0, abs=1e-6)

    broad_right = fake_block({"default": (a, b_wrong, w), "broad": (a, b_right, w)})
    record = choose_shipped_model(patterns, BACKGROUND, None, separate_block=broad_right, **VOTE)
    assert record["won"] == "broad_looks" and record["median_support"]["broad_looks"] > 0.99


def test_a_map_cut_to_a_round_screen_votes_in_the_screens_square(no_small_patterns_model):
    """Patterns that a screen smaller than the pattern lights off its centre: the vote compares
    the map's patterns and each model's A and B (in place, zero around the screen) in its square."""
    from kdeconv.preprocess.mask import from_screen

    patterns, p, q, mixed = two_grain_map(ny=12, nx=12)
    screen = {"static": "none", "dynamic": False, "mask": "circle", "screen": [4, 6, 24]}
    full = from_screen(patterns, (32, 34), screen)
    a, b_right, b_wrong, w = (from_screen(x, (32, 34), screen) if x.ndim == 4 else x
                              for x in two_grain_outputs(patterns, p, q, mixed))
    broad_right = fake_block({"default": (a, b_wrong, w), "broad": (a, b_right, w)})
    record = choose_shipped_model(full, screen, None, separate_block=broad_right, **VOTE)
    assert record["won"] == "broad_looks" and record["pixels"] == len(mixed)


def test_large_patterns_vote_at_the_neighbour_fits_compared_size(no_small_patterns_model, monkeypatch):
    """Patterns above ``PREPROCESS_SIDE`` are compared area-averaged to it (at 480 px full-size
    comparisons took 55 of the vote's 79 s), with the same choice."""
    import kdeconv.separate.model_choice as model_choice
    from kdeconv.separate.neighbour_fit import PREPROCESS_SIDE

    patterns, p, q, mixed = two_grain_map(ny=12, nx=12, side=240)
    a, b_right, b_wrong, w = two_grain_outputs(patterns, p, q, mixed)
    shapes = []

    def recorded(refs, a, b, pixels, **kwargs):
        shapes.append((refs.shape[-2:], a.shape[-2:], b.shape[-2:]))
        return neighbour_support(refs, a, b, pixels, **kwargs)

    monkeypatch.setattr(model_choice, "neighbour_support", recorded)
    broad_right = fake_block({"default": (a, b_wrong, w), "broad": (a, b_right, w)})
    record = choose_shipped_model(patterns, BACKGROUND, None, separate_block=broad_right, **VOTE)
    assert record["won"] == "broad_looks" and record["median_support"]["broad_looks"] > 0.99
    assert record["median_support"]["default"] < 0.3
    assert set(shapes) == {((PREPROCESS_SIDE,) * 2,) * 3}


def test_no_vote_on_small_maps_stacks_or_maps_without_mixtures(no_small_patterns_model):
    patterns, p, q, mixed = two_grain_map(ny=6, nx=12)
    never = fake_block({})  # a vote would call it and fail
    kwargs = dict(VOTE, separate_block=never)
    background = BACKGROUND
    small = choose_shipped_model(patterns, background, None, **kwargs)
    stack = choose_shipped_model(patterns.reshape(-1, *patterns.shape[-2:]), background, None, **kwargs)
    for record in (small, stack):
        assert record["checkpoint"] is None and "at least 8x8" in record["reason"]
        assert "no choice" in describe_model_choice(record)

    patterns, p, q, _ = two_grain_map(ny=12, nx=12)
    pure = np.zeros((12, 12, 2), np.float32)
    pure[..., 0] = 1
    quiet = fake_block({"default": (patterns, patterns, pure), "broad": (patterns, patterns, pure)})
    record = choose_shipped_model(patterns, background, None, separate_block=quiet, **VOTE)
    assert record["checkpoint"] is None and record["pixels"] == 0 and "a vote needs" in record["reason"]


@pytest.fixture
def small_patterns_model(tmp_path, monkeypatch):
    """A stand-in small-pattern model file, installed as the shipped one."""
    path = tmp_path / "small_patterns.pt"
    path.write_bytes(b"stand-in")
    path.with_suffix(".json").write_text('{"name": "small-stand-in"}')
    monkeypatch.setattr(model, "SMALL_PATTERNS_CHECKPOINT", path)
    return path


def test_small_patterns_go_to_the_small_pattern_model_and_it_stands_in_the_vote(small_patterns_model):
    background, kwargs = BACKGROUND, VOTE
    below = model.SMALL_PATTERNS_BELOW
    patterns, p, q, mixed = two_grain_map(ny=12, nx=12, side=24)
    a, b_right, b_wrong, w = two_grain_outputs(patterns, p, q, mixed)

    # a stack of small patterns: no vote, but the size's default
    stack = patterns.reshape(-1, *patterns.shape[-2:])
    record = choose_shipped_model(stack, background, None, separate_block=fake_block({}), **kwargs)
    assert record["checkpoint"] == str(small_patterns_model) and record["chosen"] == "small-stand-in"
    assert f"below {below} px" in record["size_rule"] and "at least 8x8" in record["reason"]
    assert "the default for patterns with a shorter side below" in describe_model_choice(record)

    # on a map the small-pattern model is what the broad-looks model is weighed against
    calls = []
    small_right = fake_block({"default": (a, b_right, w), "broad": (a, b_wrong, w)}, calls)
    record = choose_shipped_model(patterns, background, None, **kwargs, separate_block=small_right)
    assert calls == [str(small_patterns_model), str(model.BROAD_LOOKS_CHECKPOINT)]
    assert record["checkpoint"] == str(small_patterns_model) and record["won"] == "default"
    broad_right = fake_block({"default": (a, b_wrong, w), "broad": (a, b_right, w)})
    record = choose_shipped_model(patterns, background, None, **kwargs, separate_block=broad_right)
    assert record["checkpoint"] == str(model.BROAD_LOOKS_CHECKPOINT) and record["over"] == "small-stand-in"
    assert "chosen over the default model (small-stand-in)" in describe_model_choice(record)

    # the pattern shape the model's steps start from decides (a round screen's square), and
    # patterns of the bound's size or more keep the default
    record = choose_shipped_model(stack, background, None, separate_block=fake_block({}), **kwargs,
                                  pattern_shape=(below, below + 40))
    assert record["checkpoint"] is None and "size_rule" not in record


KINEMATIC_FE = {"kind": "kinematic", "phase": {
    "name": "fe_bcc", "space_group": 229, "lattice": [2.8665, 2.8665, 2.8665, 90, 90, 90],
    "atoms": [{"element": "Fe", "xyz": [0, 0, 0]}]}}


@pytest.mark.parametrize("master, chosen", [
    (KINEMATIC_FE, "broad_looks"),              # band profiles of another simulator
    ({"kind": "library", "phase": "fe_alpha"}, "default"),  # the dynamical library's own
])
def test_shipped_models_vote_on_simulated_maps(tmp_path, master, chosen):
    """The vote with the real models: kinematic bcc Fe goes to the broad-looks model (both grains
    on 92% of mixed pixels at minority >= 0.25 against the default's 51% on a 30x30 map), the
    library's dynamical ferrite stays with the default for its size (60 px: the small-pattern
    model)."""
    import json

    import kdeconv
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import simulate_map
    from kdeconv.separate.model_choice import size_default

    cfg = SimulateMapConfig(seed=0, nav_shape=(16, 16), n_grains=5, phases=[{"master": master}],
                            detector={"shape": [60, 60], "pc": [0.5, 0.45, 0.55]})
    simulate_map(cfg, tmp_path / "sim", echo=lambda *_: None)
    result = kdeconv.separate(tmp_path / "sim" / "map.up2", progress=False, in_grain_claims=False)
    record = result.model_choice
    assert record["pixels"] >= MIN_PIXELS, record
    expected = model.BROAD_LOOKS_CHECKPOINT if chosen == "broad_looks" else size_default((60, 60))
    name = json.loads(expected.with_suffix(".json").read_text())["name"]
    assert record["chosen"] == name, record
    assert (record["broad_looks_wins"] > 0.5) == (chosen == "broad_looks"), record


def test_a_named_shipped_model_does_not_go_with_adapt():
    import kdeconv
    from kdeconv.errors import InputError

    with pytest.raises(InputError, match="not both"):
        kdeconv.separate(np.ones((4, 4, 32, 32), np.float32), model="broad_looks", adapt=True, progress=False)


def test_a_named_shipped_model_that_is_not_installed_is_refused(tmp_path, monkeypatch):
    import kdeconv
    from kdeconv.errors import InputError

    monkeypatch.setattr(model, "SMALL_PATTERNS_CHECKPOINT", tmp_path / "small_patterns.pt")
    with pytest.raises(InputError, match="'small_patterns' is not installed"):
        kdeconv.separate(np.ones((4, 4, 32, 32), np.float32), model="small_patterns", progress=False)


def test_adapt_starts_small_patterns_from_the_small_pattern_model(small_patterns_model):
    from kdeconv.separate.model_choice import adapt_base_for

    below = model.SMALL_PATTERNS_BELOW
    assert adapt_base_for((60, 60)) == small_patterns_model
    assert adapt_base_for((below - 1, 4 * below)) == small_patterns_model  # the shorter side decides
    assert adapt_base_for((below, below)) == model.ADAPT_BASE_CHECKPOINT


def test_adapt_steps_gently_only_where_the_small_pattern_model_reads_the_map(small_patterns_model, tmp_path,
                                                                            monkeypatch):
    from kdeconv.config.adapt import AdaptConfig
    from kdeconv.separate.model_choice import ADAPT_LR, ADAPT_LR_GENTLE, GENTLE_BELOW, adapt_lr_for

    assert AdaptConfig.model_fields["lr"].default is None  # decided per base and map
    assert ADAPT_LR_GENTLE < ADAPT_LR
    close, far = GENTLE_BELOW / 3, 2 * GENTLE_BELOW  # held-out weight errors: a simulated map, real Ni
    assert adapt_lr_for(small_patterns_model, close) == ADAPT_LR_GENTLE
    assert adapt_lr_for(small_patterns_model, far) == ADAPT_LR
    monkeypatch.chdir(small_patterns_model.parent)  # the same file, named relative
    assert adapt_lr_for(small_patterns_model.name, close) == ADAPT_LR_GENTLE
    copy = tmp_path / "copy" / "small_patterns.pt"  # any other file, a copy included: the large step
    copy.parent.mkdir()
    copy.write_bytes(small_patterns_model.read_bytes())
    assert adapt_lr_for(copy, close) == ADAPT_LR
    assert adapt_lr_for(model.ADAPT_BASE_CHECKPOINT, close) == ADAPT_LR
