import numpy as np
import pytest

from kdeconv.evaluate.polycrystal import (
    boundary_distance,
    deformation_fields,
    deformed_quaternions,
    footprint_samples,
    grain_fractions,
    random_seeds,
    top_two,
)


@pytest.mark.parametrize("shape", ["gaussian", "disc"])
def test_footprint_weights(shape):
    offsets, w = footprint_samples(shape, radius=1.5, supersample=4)
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()
    reach = 1.5 if shape == "disc" else 2.25
    assert np.hypot(*offsets.T).max() <= reach + 1e-9
    assert np.allclose((offsets * w[:, None]).sum(0), 0.0)  # centred
    assert footprint_samples("disc", 0.0)[0].shape == (1, 2)


def test_two_grains_half_plane_known_weights():
    # Boundary at x = 2.5 between seeds at x = 0.5 and x = 4.5 (same y): pixels x=2 and x=3 straddle it.
    seeds = np.array([[1.0, 0.5], [1.0, 4.5]])
    offsets, w = footprint_samples("disc", 1.0, supersample=16)
    frac = grain_fractions(seeds, (3, 6), offsets, w)
    ga, gb, weights = top_two(frac, min_weight=0.0)
    assert np.allclose(weights.sum(-1), 1.0)
    assert (weights[..., 0] >= weights[..., 1]).all()
    assert (weights[:, [0, 1, 4, 5], 1] == 0).all() and (gb[:, [0, 1, 4, 5]] == -1).all()
    # Disc of radius 1 centred 0.5 from the boundary: the far segment is ~0.196 of the disc area.
    assert weights[:, 2, 1] == pytest.approx(np.full(3, 0.1955), abs=0.02)
    assert (ga[:, 2] == 0).all() and (gb[:, 2] == 1).all() and (ga[:, 3] == 1).all()


def test_mixtures_only_near_boundaries_and_pure_inside():
    rng = np.random.default_rng(7)
    nav = (20, 24)
    seeds = random_seeds(rng, 9, nav)
    radius = 1.2
    offsets, w = footprint_samples("gaussian", radius, supersample=5)
    ga, gb, weights = top_two(grain_fractions(seeds, nav, offsets, w), min_weight=0.02)
    assert np.allclose(weights.sum(-1), 1.0)
    dist = boundary_distance(seeds, nav)
    reach = np.hypot(*offsets.T).max()
    mixed = weights[..., 1] > 0
    assert mixed.any() and (~mixed).any()
    assert (dist[mixed] <= reach + 1e-9).all()         # mixtures only near boundaries
    assert not mixed[dist > reach].any()               # pure inside grains
    assert (gb[~mixed] == -1).all() and (weights[~mixed, 0] == 1).all()


def _angle_deg(p, q):
    return np.degrees(2 * np.arccos(np.clip(np.abs((p * q).sum(axis=1)), 0, 1)))


def test_deformed_grain_bends_by_the_gradient_along_its_direction():
    rng = np.random.default_rng(3)
    quats = np.array([[1.0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]])
    seeds = np.array([[2.0, 2.0], [8.0, 8.0]])
    axes, directions = deformation_fields(rng, 2)
    assert np.allclose(np.linalg.norm(axes, axis=1), 1) and np.allclose(np.linalg.norm(directions, axis=1), 1)
    # Points along grain 0's direction: rotation 0.7 deg per pixel about its axis.
    steps = np.arange(-3, 4, dtype=float)
    positions = seeds[0] + steps[:, None] * directions[0]
    grain = np.zeros(len(steps), int)
    q = deformed_quaternions(quats, seeds, axes, directions, grain, positions, gradient=0.7)
    assert np.allclose(np.linalg.norm(q, axis=1), 1)
    assert np.allclose(_angle_deg(q, np.repeat(quats[:1], len(q), 0)), 0.7 * np.abs(steps), atol=1e-6)
    # Across the direction nothing changes; the rotation is about the grain's own axis.
    across = seeds[0] + 4 * np.array([-directions[0, 1], directions[0, 0]])
    q0 = deformed_quaternions(quats, seeds, axes, directions, np.array([0]), across[None], gradient=0.7)
    assert np.allclose(q0, quats[:1], atol=1e-9)
    assert np.allclose(np.abs(q[-1, 1:] / np.linalg.norm(q[-1, 1:])), np.abs(axes[0]), atol=1e-9)
    # Scatter adds its own angle; no grain gives NaN.
    kick = np.array([[0.0, 0.0, 2.0]])
    q1 = deformed_quaternions(quats, seeds, axes, directions, np.array([1]), seeds[1:], 0.7, kick)
    assert _angle_deg(q1, quats[1:])[0] == pytest.approx(2.0)
    none = deformed_quaternions(quats, seeds, axes, directions, np.array([-1]), seeds[:1], 0.7)
    assert np.isnan(none).all()
