"""A Voronoi polycrystal under a beam of finite size: which grains each scan pixel sees, and how much.

Pure kernels. Coordinates are in scan pixels: pixel (i, j) is centred at (y, x) = (i, j). The beam
footprint is sampled on a sub-pixel grid; each sample falls in the grain of its nearest seed, so a
pixel's grain fractions are footprint areas. Only the two largest are kept (renormalised to sum 1).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["random_seeds", "footprint_samples", "grain_fractions", "top_two", "boundary_distance",
           "deformation_fields", "deformed_quaternions"]


def random_seeds(rng: np.random.Generator, n_grains: int, nav_shape: tuple[int, int]) -> np.ndarray:
    """``n_grains`` seed points (y, x) uniform over the scanned area (pixel edges included)."""
    ny, nx = nav_shape
    return rng.uniform((-0.5, -0.5), (ny - 0.5, nx - 0.5), size=(n_grains, 2))


def footprint_samples(shape: str, radius: float, aspect_y: float = 1.0,
                      supersample: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel sample offsets (k, 2) (dy, dx) and their weights (k,) summing to 1.

    ``disc``: uniform inside ``radius``. ``gaussian``: ``radius`` = 2 sigma, cut at 3 sigma.
    ``aspect_y`` stretches the footprint along y (a tilted sample elongates the beam spot).
    A zero radius is a point beam (one sample).
    """
    if radius <= 0:
        return np.zeros((1, 2)), np.ones(1)
    reach = radius if shape == "disc" else 1.5 * radius
    step = 1.0 / supersample
    k = int(np.ceil(reach / step))
    grid = np.arange(-k, k + 1) * step
    dy, dx = np.meshgrid(grid, grid, indexing="ij")
    r2 = dy**2 + dx**2
    if shape == "disc":
        w = (r2 <= radius**2).astype(np.float64)
    elif shape == "gaussian":
        sigma = radius / 2.0
        w = np.where(r2 <= reach**2, np.exp(-r2 / (2 * sigma**2)), 0.0)
    else:
        raise ValueError(f"unknown footprint shape {shape!r}")
    keep = w > 0
    offsets = np.stack([dy[keep] * aspect_y, dx[keep]], axis=1)
    return offsets, w[keep] / w[keep].sum()


def grain_fractions(seeds: np.ndarray, nav_shape: tuple[int, int], offsets: np.ndarray,
                    weights: np.ndarray) -> np.ndarray:
    """(ny, nx, n_grains) footprint fraction of every grain at every pixel (rows sum to 1)."""
    ny, nx = nav_shape
    tree = cKDTree(seeds)
    centres = np.stack(np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij"), axis=-1).reshape(-1, 2)
    frac = np.zeros((ny * nx, len(seeds)))
    rows = np.arange(ny * nx)
    for off, w in zip(offsets, weights):
        _, label = tree.query(centres + off)
        np.add.at(frac, (rows, label), w)
    return frac.reshape(ny, nx, len(seeds))


def top_two(fractions: np.ndarray, min_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grain_a, grain_b, weights): the two largest fractions renormalised, A dominant.

    Where the minority weight is below ``min_weight`` the pixel is pure: weights (1, 0), grain_b -1.
    """
    nav = fractions.shape[:-1]
    flat = fractions.reshape(-1, fractions.shape[-1])
    order = np.argsort(-flat, axis=1, kind="stable")
    ga, gb = order[:, 0], order[:, 1] if flat.shape[1] > 1 else np.full(len(flat), -1)
    rows = np.arange(len(flat))
    fa = flat[rows, ga]
    fb = flat[rows, gb] if flat.shape[1] > 1 else np.zeros(len(flat))
    wb = fb / (fa + fb)
    pure = wb < max(min_weight, 1e-12)
    wb = np.where(pure, 0.0, wb)
    gb = np.where(pure, -1, gb)
    weights = np.stack([1.0 - wb, wb], axis=1).astype(np.float32)
    return ga.reshape(nav).astype(np.int32), gb.reshape(nav).astype(np.int32), weights.reshape(nav + (2,))


def boundary_distance(seeds: np.ndarray, nav_shape: tuple[int, int]) -> np.ndarray:
    """(ny, nx) distance from each pixel centre to the nearest Voronoi boundary, in pixels."""
    ny, nx = nav_shape
    p = np.stack(np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij"), axis=-1).reshape(-1, 1, 2)
    d2 = ((p - seeds[None]) ** 2).sum(-1)  # (n, g)
    own = d2.argmin(axis=1)
    s_own = seeds[own][:, None, :]
    gap = np.linalg.norm(seeds[None] - s_own, axis=-1)  # |s_j - s_own|
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = (d2 - d2[np.arange(len(own)), own][:, None]) / (2 * gap)
    dist[np.arange(len(own)), own] = np.inf
    return dist.min(axis=1).reshape(ny, nx)


def deformation_fields(rng: np.random.Generator, n_grains: int) -> tuple[np.ndarray, np.ndarray]:
    """Per grain a lattice-rotation axis (n, 3), uniform on the sphere, and the in-plane direction
    (n, 2) (dy, dx) along which the rotation about it grows: a bent grain's simplest field."""
    axes = rng.normal(size=(n_grains, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angle = rng.uniform(0, 2 * np.pi, n_grains)
    return axes, np.stack([np.sin(angle), np.cos(angle)], axis=1)


def deformed_quaternions(grain_quats: np.ndarray, seeds: np.ndarray, axes: np.ndarray,
                         directions: np.ndarray, grain: np.ndarray, positions: np.ndarray,
                         gradient: float, scatter: np.ndarray | None = None) -> np.ndarray:
    """Orientation (n, 4) of grain ``grain[i]`` at scan position ``positions[i]`` (y, x) in pixels.

    The grain's quaternion composed with a rotation about its axis by ``gradient`` degrees per
    pixel of distance from its seed along its direction, and by ``scatter[i]`` (a rotation vector
    in degrees, per pixel) on top. NaN where ``grain`` is -1 (no grain).
    """
    from orix.quaternion import Rotation

    grain = np.asarray(grain)
    own = np.clip(grain, 0, None)
    along = ((positions - seeds[own]) * directions[own]).sum(axis=1)
    vector = axes[own] * (gradient * along)[:, None]
    if scatter is not None:
        vector = vector + scatter
    turn = Rotation.from_axes_angles(vector, np.linalg.norm(vector, axis=1), degrees=True)
    q = np.array((Rotation(grain_quats[own]) * turn).data, np.float64)  # the turn applied first
    q[q[:, 0] < 0] *= -1
    q[grain < 0] = np.nan
    return q
