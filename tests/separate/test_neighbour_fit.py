"""The neighbour fit's kernel (kdeconv.separate.neighbour_fit) on tiles with known grains and
known mixtures: the pair and its weight are found, pure pixels keep none, and a pair that misses
the pixel's own grain, or pairs one grain with itself, is refused."""

from __future__ import annotations

import numpy as np

from kdeconv.separate.neighbour_fit import (
    NeighbourFitSettings,
    fit_tile,
    mean_reliability,
    single_pattern_signal,
    unit_vectors,
)

SIG = (32, 32)


def _bands(rng) -> np.ndarray:
    """A pattern of a few random straight bands, as a crystal's Kikuchi bands, at the same
    contrast for every crystal (one phase, one detector: the weights are in signal units)."""
    y, x = np.mgrid[0:SIG[0], 0:SIG[1]] / SIG[0]
    out = np.zeros(SIG)
    for _ in range(6):
        angle, offset = rng.uniform(0, np.pi), rng.uniform(0.1, 0.9)
        d = np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5) + 0.5 - offset
        out += np.exp(-0.5 * (d / 0.04) ** 2)
    return (0.5 + 0.15 * (out - out.mean()) / out.std()).astype(np.float32)


def _tile(fractions: np.ndarray, grains: np.ndarray, noise: float, seed: int = 0):
    """Patterns ``fractions @ grains`` plus Gaussian noise, as preprocessed patterns."""
    rng = np.random.default_rng(seed)
    clean = np.einsum("yxg,gij->yxij", fractions, grains)
    return (clean + rng.normal(0, noise, clean.shape)).astype(np.float32)


def _two_grain_tile(width=12, boundary=6, noise=0.05, seed=0):
    """Grain 0 left of column ``boundary``, grain 1 right of it; the column either side mixes
    them 0.7/0.3 (left) and 0.6/0.4 (right, grain 1 dominant). The segmentation leaves those two
    columns out of both grains; the next two either side lie within 2 px of the boundary."""
    rng = np.random.default_rng(seed)
    grains = np.stack([_bands(rng) for _ in range(2)])
    ny, nx = 9, width
    fractions = np.zeros((ny, nx, 2))
    fractions[:, :boundary, 0] = 1
    fractions[:, boundary:, 1] = 1
    fractions[:, boundary - 1] = (0.7, 0.3)
    fractions[:, boundary] = (0.4, 0.6)
    cols = np.arange(nx)
    labels = np.where(cols < boundary - 1, 0, np.where(cols > boundary, 1, -1))
    labels = np.broadcast_to(labels, (ny, nx)).copy()
    interior = np.where(labels < 0, 0, np.minimum(np.abs(cols - boundary + 0.5) - 1.5, 9))
    interior = np.broadcast_to(interior, (ny, nx)).astype(np.float32).copy()
    return grains, fractions, _tile(fractions, grains, noise, seed), labels, interior


def _fit(pre, labels, interior, a=None, **settings):
    ny, nx = labels.shape
    return fit_tile(pre, unit_vectors(pre, SIG), labels, labels >= 0, interior,
                    (slice(0, ny), slice(0, nx)), None if a is None else unit_vectors(a, SIG),
                    NeighbourFitSettings(**settings))


def _ncc(a, b) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_mixtures_between_two_grains_get_their_weight_and_the_second_grain_as_b():
    grains, fractions, pre, labels, interior = _two_grain_tile()
    fit = _fit(pre, labels, interior)
    mixed = fractions.min(-1) > 0
    assert fit.second[mixed].all()
    np.testing.assert_allclose(fit.weights[mixed][:, 1], fractions[mixed].min(-1), atol=0.03)
    for y, x in zip(*np.nonzero(mixed)):
        second = int(np.argmin(fractions[y, x]))
        assert _ncc(fit.b[y, x], grains[second]) > 0.99  # a mean of interiors: the noise averages out
        assert fit.b[y, x].min() == 0 and fit.b[y, x].max() == 1  # in [0, 1], as the model's B
    # pure pixels near the boundary (within deep_px) keep no second grain
    near = (interior < 2) & ~mixed
    assert near.any() and not fit.second[near].any()
    # deep interiors are never touched
    deep = interior >= 2
    assert not fit.fitted[deep].any() and not fit.second[deep].any()


def test_a_model_a_of_the_second_grains_crystal_is_replaced_by_the_first_grains():
    grains, fractions, pre, labels, interior = _two_grain_tile()
    a = np.broadcast_to(grains[1], pre.shape).copy()  # the model's A: always grain 1
    fit = _fit(pre, labels, interior, a=a)
    mixed = fractions.min(-1) > 0
    dominant_0 = mixed & (fractions[..., 0] > 0.5)
    assert fit.a_replaced[dominant_0].all() and not fit.a_replaced[mixed & ~dominant_0].any()
    y, x = np.argwhere(dominant_0)[0]
    assert _ncc(fit.a[y, x], grains[0]) > 0.99


def test_a_pixel_whose_own_grain_is_not_nearby_gets_no_pair():
    """A small grain with no interior pixels (no label) between two labelled grains: its pure
    pixels are best 'explained' by the two others, worse than any right pair would be."""
    rng = np.random.default_rng(3)
    grains = np.stack([_bands(rng) for _ in range(3)])
    ny, nx = 9, 12
    fractions = np.zeros((ny, nx, 3))
    fractions[:, :5, 0], fractions[:, 5:7, 2], fractions[:, 7:, 1] = 1, 1, 1
    pre = _tile(fractions, grains, 0.05, 3)
    labels = np.where(np.arange(nx) < 4, 0, np.where(np.arange(nx) > 7, 1, -1))
    labels = np.broadcast_to(labels, (ny, nx)).copy()
    interior = np.zeros((ny, nx), np.float32)
    fit = _fit(pre, labels, interior)
    hidden = fractions[..., 2] == 1
    assert fit.fitted[hidden].all() and not fit.second[hidden].any()


def test_a_second_grain_whose_interior_lies_beyond_the_radius_is_found_farther_out():
    """Grain 1's pixels beside the boundary are left out of the segmentation (a narrow grain,
    one cut off by the map's edge): its nearest labelled pixel lies 6 steps from the mixed
    column. Within ``radius`` only grain 0 is seen; ``far_radius`` finds the pair, its weight
    and B, and pure pixels there still get none."""
    rng = np.random.default_rng(6)
    grains = np.stack([_bands(rng) for _ in range(2)])
    ny, nx = 9, 16
    cols = np.arange(nx)
    fractions = np.zeros((ny, nx, 2))
    fractions[:, :5, 0], fractions[:, 6:, 1] = 1, 1
    fractions[:, 5] = (0.85, 0.15)
    pre = _tile(fractions, grains, 0.05, 6)
    labels = np.broadcast_to(np.where(cols < 5, 0, np.where(cols >= 11, 1, -1)), (ny, nx)).copy()
    interior = np.broadcast_to(np.where((cols >= 3) & (cols <= 12), 0.0, 5.0), (ny, nx))
    interior = interior.astype(np.float32).copy()
    mixed = fractions.min(-1) > 0
    near_only = _fit(pre, labels, interior, far_radius=0)
    assert not near_only.fitted[mixed].any()
    fit = _fit(pre, labels, interior)
    assert fit.second[mixed].all()
    np.testing.assert_allclose(fit.weights[mixed][:, 1], 0.15, atol=0.03)
    y, x = np.argwhere(mixed)[0]
    assert _ncc(fit.b[y, x], grains[1]) > 0.99
    pure = ~mixed & (interior < 2)
    assert fit.fitted[pure].any() and not fit.second[pure].any()


def test_one_grain_cut_in_two_segments_is_not_paired_with_itself():
    """Pure pixels between two labels of the same grain: a mix of the two halves' means beats
    either alone on noise, but the halves correlate as two means of one grain do."""
    rng = np.random.default_rng(4)
    grain = _bands(rng)[None]
    ny, nx = 9, 10
    fractions = np.ones((ny, nx, 1))
    pre = _tile(fractions, grain, 0.15, 4)
    labels = np.broadcast_to(np.where(np.arange(nx) < 5, 0, 1), (ny, nx)).copy()
    interior = np.zeros((ny, nx), np.float32)
    fit = _fit(pre, labels, interior)
    assert fit.fitted[:, 2:-2].all() and not fit.second.any()
    # switched off, the rule would pair the grain with itself: invented second grains
    loose = _fit(pre, labels, interior, same_grain_ncc=1.01, crystal_side=0)
    assert loose.second.sum() >= 5


def test_the_signal_share_and_the_reliability_of_a_mean_follow_the_noise():
    rng = np.random.default_rng(5)
    grain = _bands(rng)
    clean = unit_vectors(grain[None], SIG)[0]
    noise = 0.1
    pre = (grain + rng.normal(0, noise, (6, 6) + SIG)).astype(np.float32)
    fit = unit_vectors(pre, SIG)
    labels = np.zeros((6, 6), int)
    signal = single_pattern_signal(fit, labels, labels >= 0)
    expected = np.var(grain) / (np.var(grain) + noise ** 2)
    assert abs(signal - expected) < 0.05
    mean = unit_vectors(pre.reshape(-1, *SIG).mean(0)[None], SIG)[0]
    assert abs(float(mean @ clean) ** 2 - mean_reliability(36, signal)) < 0.02


def _crystal(seed: int, turn: float = 0.0) -> np.ndarray:
    """``_bands`` of crystal ``seed``, every band turned by ``turn`` radians: one crystal bent."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIG[0], 0:SIG[1]] / SIG[0]
    out = np.zeros(SIG)
    for _ in range(6):
        angle, offset = rng.uniform(0, np.pi) + turn, rng.uniform(0.1, 0.9)
        d = np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5) + 0.5 - offset
        out += np.exp(-0.5 * (d / 0.04) ** 2)
    return (0.15 * (out - out.mean()) / out.std()).astype(np.float32)


def _detector(seed: int = 99) -> np.ndarray:
    """What every pattern of a camera shares: a fixed-pattern gain field, as large as a crystal's bands."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(seed).normal(size=SIG), 2.0)
    return (0.5 + 0.15 * field / field.std()).astype(np.float32)


def _shared_of(grains: list[np.ndarray], noise: float = 0.02):
    """The ``shared_direction`` of a map of these distinct grains (3x3 pixels each) on ``_detector``."""
    from kdeconv.separate.neighbour_fit import shared_direction

    rng = np.random.default_rng(7)
    patterns = np.stack([g + _detector() + rng.normal(0, noise, SIG) for g in grains for _ in range(9)])
    fit = unit_vectors(patterns.reshape(len(grains), 9, *SIG), SIG)
    labels = np.repeat(np.arange(len(grains))[:, None], 9, axis=1)
    return shared_direction(fit, labels, labels >= 0)


def test_a_bent_grain_cut_in_two_is_one_crystal_on_a_camera_every_pattern_shares():
    """One crystal turning steadily across the tile, cut in two labels, on a detector whose gain
    field every pattern carries: the halves' plain means correlate below the same-grain bar, but
    less the map's shared direction they are one crystal, so none of its pure pixels is paired;
    two distinct crystals on that camera still are."""
    ny, nx = 7, 10
    rng = np.random.default_rng(8)
    turns = np.radians(3.0) * (np.arange(nx) - nx / 2)
    bent = np.stack([_crystal(11, t) for t in turns])
    pre = (bent[None] + _detector() + rng.normal(0, 0.02, (ny, nx) + SIG)).astype(np.float32)
    labels = np.broadcast_to(np.where(np.arange(nx) < nx // 2, 0, 1), (ny, nx)).copy()
    interior = np.zeros((ny, nx), np.float32)
    shared, share = _shared_of([_crystal(s) for s in (1, 2, 3, 4, 5)])
    assert shared is not None and share > 0.3
    detector = unit_vectors(_detector()[None], SIG)[0]
    assert float(shared @ detector) > 0.9  # the camera's gain field, not any one crystal
    tile = dict(labels=labels, members=labels >= 0, interior=interior, core=(slice(0, ny), slice(0, nx)))
    fit = fit_tile(pre, unit_vectors(pre, SIG), **tile, shared=shared)
    assert fit.fitted[:, 2:-2].all() and not fit.second.any()
    # without the shared direction (or with the rule off) the bent grain pairs with itself
    assert fit_tile(pre, unit_vectors(pre, SIG), **tile).second.sum() >= 5
    off = NeighbourFitSettings(same_crystal_ncc=1.01, crystal_side=0)
    assert fit_tile(pre, unit_vectors(pre, SIG), **tile, settings=off, shared=shared).second.sum() >= 5

    # two distinct crystals on the same camera, mixed at the boundary: still a pair
    grains = np.stack([_crystal(21), _crystal(22)])
    fractions = np.zeros((ny, nx, 2))
    fractions[:, :5, 0], fractions[:, 5:, 1] = 1, 1
    fractions[:, 4], fractions[:, 5] = (0.7, 0.3), (0.35, 0.65)
    pre = (np.einsum("yxg,gij->yxij", fractions, grains) + _detector()
           + rng.normal(0, 0.02, (ny, nx) + SIG)).astype(np.float32)
    labels = np.broadcast_to(np.where(np.arange(nx) < 4, 0, np.where(np.arange(nx) > 5, 1, -1)), (ny, nx))
    fit = fit_tile(pre, unit_vectors(pre, SIG), labels, labels >= 0, interior,
                   (slice(0, ny), slice(0, nx)), shared=shared)
    mixed = fractions.min(-1) > 0
    assert fit.second[mixed].all() and not fit.second[~mixed].any()
    np.testing.assert_allclose(fit.weights[mixed][:, 1], fractions[mixed].min(-1), atol=0.05)


def test_flat_grains_of_unequal_signal_read_as_flat_whatever_their_sizes():
    """Each grain holds one orientation, but the large grain's patterns carry less signal than
    the small grains' (a grain's band contrast). Only the large grain has members 3 steps
    apart: pooled over the map, its far pairs against every grain's near pairs would read as
    bent; each grain against its own neighbours reads flat."""
    from kdeconv.separate.neighbour_fit import _same_grain_ncc, grain_coherence

    rng = np.random.default_rng(13)
    ny, nx = 8, 16
    labels = np.full((ny, nx), -1)
    labels[:, :3] = 0                                    # a large grain: columns 0-2
    for y0 in (0, 3, 6):                                 # twelve small ones, 2x2 pixels each
        for x0 in (4, 7, 10, 13):
            labels[y0:y0 + 2, x0:x0 + 2] = labels.max() + 1
    n = labels.max() + 1
    crystals = np.stack([_bands(rng) for _ in range(n)])
    noise = np.where(np.arange(n) == 0, 0.12, 0.03)       # the large grain is the noisy one
    pre = np.zeros((ny, nx) + SIG, np.float32)
    for g in range(n):
        where = labels == g
        pre[where] = crystals[g] + rng.normal(0, noise[g], (int(where.sum()),) + SIG)
    fit_vectors = unit_vectors(pre, SIG)
    members = labels >= 0
    far, near = (_same_grain_ncc(fit_vectors, labels, members, step) for step in (3, 1))
    pooled = far / near
    assert pooled < 0.9  # the pooled reading would call this map bent
    assert grain_coherence(fit_vectors, labels, members) > 0.98


def test_on_bent_grains_each_grain_is_its_pixels_nearest_the_boundary():
    """Both grains turn steadily away from their boundary. The grains' coherence tells the map
    apart from one of flat grains, and each grain's nearest pixels then give a B closer to
    grain 1's crystal at the boundary than the mean over all its pixels nearby."""
    from kdeconv.separate.neighbour_fit import grain_coherence, nearest_for

    ny, nx, boundary = 9, 12, 6
    rng = np.random.default_rng(12)
    cols = np.arange(nx)
    turns = np.radians(4.0) * (np.abs(cols - boundary + 0.5)[None] + np.arange(ny)[:, None])
    clean = np.stack([[_crystal(31 if x < boundary else 32, turns[y, x]) for x in range(nx)]
                      for y in range(ny)])
    for y in range(ny):
        clean[y, boundary - 1] = 0.7 * clean[y, boundary - 1] + 0.3 * _crystal(32, turns[y, boundary])
    pre = (clean + 0.5 + rng.normal(0, 0.02, clean.shape)).astype(np.float32)
    labels = np.broadcast_to(np.where(cols < boundary - 1, 0, np.where(cols > boundary - 1, 1, -1)), (ny, nx))
    labels = labels.copy()
    fit_vectors = unit_vectors(pre, SIG)
    coherence = grain_coherence(fit_vectors, labels, labels >= 0)
    assert coherence < 0.98 and nearest_for(coherence) == 6

    flat = (np.broadcast_to(np.stack([_crystal(31)] * boundary + [_crystal(32)] * (nx - boundary)),
                            (ny, nx) + SIG) + 0.5 + rng.normal(0, 0.02, clean.shape)).astype(np.float32)
    assert grain_coherence(unit_vectors(flat, SIG), labels, labels >= 0) > 0.99
    assert nearest_for(1.0) is None

    interior = np.broadcast_to(np.abs(cols - boundary + 0.5) - 0.5, (ny, nx)).astype(np.float32).copy()
    core = (slice(0, ny), slice(0, nx))
    y, x = ny // 2, boundary - 1
    at_boundary = _crystal(32, turns[y, boundary])
    b_near = fit_tile(pre, fit_vectors, labels, labels >= 0, interior, core, nearest=6)
    b_all = fit_tile(pre, fit_vectors, labels, labels >= 0, interior, core)
    # the mean of all nearby pixels is a blur of orientations that does not explain C
    assert b_near.second[:, x].sum() >= 6 and b_all.second[:, x].sum() <= 3
    rows = b_near.second[:, x]
    np.testing.assert_allclose(b_near.weights[rows, x, 1], 0.3, atol=0.05)
    assert b_near.second[y, x] and _ncc(b_near.b[y, x], at_boundary) > 0.95


def test_adapt_reads_a_bent_grain_cut_in_two_as_one_crystal_where_its_segments_meet(tmp_path):
    """A map store on the shared-gain camera: a bent crystal cut into segments 0 and 1, beside
    three distinct crystals (2, 3, 4). Where 0 and 1 meet they are one crystal, so adapt pairs
    and holds them out as one grain; the distinct crystals stay apart."""
    import zarr

    from kdeconv.adapt.find_pure import one_crystal_segments
    from kdeconv.adapt.pure import background_settings

    ny, nx = 12, 16
    rng = np.random.default_rng(5)
    labels = np.full((ny, nx), -1)
    labels[:5, :3], labels[:5, 4:8], labels[:5, 9:] = 0, 1, 2
    labels[6:, :8], labels[6:, 9:] = 3, 4
    clean = np.zeros((ny, nx) + SIG, np.float32)
    for x in range(nx):  # the bent crystal turns 1.5 degrees per column, through its cut too
        clean[:6, x] = _crystal(11, np.radians(1.5) * (x - 4)) if x < 8 else _crystal(12)
        clean[6:, x] = _crystal(13) if x < 8 else _crystal(14)
    clean[:, 8] = 0.5 * clean[:, 7] + 0.5 * clean[:, 9]  # the boundaries hold mixtures
    clean[5] = 0.5 * clean[4] + 0.5 * clean[6]
    patterns = clean + _detector() + rng.normal(0, 0.02, clean.shape).astype(np.float32)
    path = tmp_path / "map.zarr"
    zarr.open_group(str(path), mode="w").create_array("patterns", data=patterns, chunks=(6, 8) + SIG)
    segments = np.array([0, 0, 1, 1, 2, 3, 4, 4])
    no_background = background_settings({"static": "none", "dynamic": False})
    crystals, record = one_crystal_segments(path, labels, segments, background=no_background)
    np.testing.assert_array_equal(crystals, [0, 0, 0, 0, 2, 3, 4, 4])
    assert record["joined"] == [[0, 1]] and record["crystals"] == 4 and record["segments"] == 5
    assert record["contacts"] >= 5
    # a line scan has no segments that meet; patterns cut to a round screen are read in its square
    assert one_crystal_segments(path, labels[0], segments, background=no_background)[1] == {
        "skipped": "needs a 2-D map"}
    screen = background_settings({"static": "none", "dynamic": False, "mask": "circle", "screen": [2, 2, 28]})
    crystals, record = one_crystal_segments(path, labels, segments, background=screen)
    np.testing.assert_array_equal(crystals, [0, 0, 0, 0, 2, 3, 4, 4])


def test_small_patterns_of_one_bent_crystal_are_one_crystal_once_binned():
    """hcp Mg at 60 px turning 0.5 degrees per column, cut into two labels, noisy: a crystal's
    small pattern changes so fast with orientation that its halves' 6-pixel means correlate
    below both full-size bars, and the pure pixels between them are fitted as a mix of the
    crystal with itself; binned to ``crystal_side`` (24 px) they are one crystal and none is
    paired. Two distinct Mg crystals with a mixed boundary still pair, at their weights."""
    from orix.quaternion import Rotation
    from scipy.ndimage import gaussian_filter

    from kdeconv.adapt.pure import background_settings
    from kdeconv.config.detector import DetectorSpec
    from kdeconv.separate.chunk import preprocess_patterns
    from kdeconv.simulate import load_master, random_quaternions, simulate_patterns

    sig = (60, 60)
    detector = DetectorSpec(shape=sig).to_kikuchipy()
    master = load_master({"kind": "library", "phase": "mg", "energy": 20})
    background = background_settings({"static": "none", "dynamic": True})
    rng = np.random.default_rng(3)
    ny, nx = 7, 10
    crystals = Rotation(random_quaternions(rng, 3))
    axis = rng.normal(size=3)
    turns = Rotation.from_axes_angles(np.tile(axis / np.linalg.norm(axis), (nx, 1)),
                                      np.radians(0.5) * (np.arange(nx) - nx / 2))
    bent = preprocess_patterns(simulate_patterns(master, crystals[0] * turns, detector), background)
    pre = (bent[None] + rng.normal(0, 0.1, (ny, nx) + sig)).astype(np.float32)
    labels = np.broadcast_to(np.where(np.arange(nx) < nx // 2, 0, 1), (ny, nx)).copy()
    # any direction the map's grains share (here a smooth gain field) switches the crystal tests on
    shared = unit_vectors(gaussian_filter(np.random.default_rng(9).normal(size=sig), 4.0)[None], sig)[0]
    tile = dict(labels=labels, members=labels >= 0, interior=np.zeros((ny, nx), np.float32),
                core=(slice(0, ny), slice(0, nx)), shared=shared, nearest=6)
    vectors = unit_vectors(pre, sig)
    assert not fit_tile(pre, vectors, **tile).second.any()
    full_size_only = NeighbourFitSettings(crystal_side=0)
    assert fit_tile(pre, vectors, **tile, settings=full_size_only).second.sum() >= 8

    two = preprocess_patterns(simulate_patterns(master, crystals[1:], detector), background)
    fractions = np.zeros((ny, nx, 2))
    fractions[:, :5, 0], fractions[:, 5:, 1] = 1, 1
    fractions[:, 4], fractions[:, 5] = (0.7, 0.3), (0.35, 0.65)
    pre = np.einsum("yxg,gij->yxij", fractions, two) + rng.normal(0, 0.03, (ny, nx) + sig)
    pre = pre.astype(np.float32)
    labels = np.broadcast_to(np.where(np.arange(nx) < 4, 0, np.where(np.arange(nx) > 5, 1, -1)), (ny, nx))
    fit = fit_tile(pre, unit_vectors(pre, sig), labels, labels >= 0, np.zeros((ny, nx), np.float32),
                   (slice(0, ny), slice(0, nx)), shared=shared)
    mixed = fractions.min(-1) > 0
    assert fit.second[mixed].all() and not fit.second[~mixed].any()
    np.testing.assert_allclose(fit.weights[mixed][:, 1], fractions[mixed].min(-1), atol=0.08)
