"""Projection of pure patterns from a master pattern onto detectors.

``simulate_patterns`` is the plain kikuchipy projection for one detector; ``simulate_varied``
projects each pattern with its own detector geometry (PC, tilts), which ``get_patterns`` cannot
do for tilts, by calling kikuchipy's numba kernels directly (checked against ``get_patterns``
in tests/test_simulate.py).
"""

from __future__ import annotations

import numpy as np

from kdeconv.config.detector import DetectorSpec
from kdeconv.simulate.masters import Master

__all__ = ["simulate_patterns", "simulate_varied", "direction_cosines_of", "random_quaternions"]


def random_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly random unit quaternions (w, x, y, z), float64, from ``rng``.

    Shoemake's method; used instead of ``Rotation.random`` because that draws from numpy's
    global state, which is not keyed by (seed, index). ``w >= 0`` (same rotation as -q).
    """
    u1, u2, u3 = rng.random((3, n))
    q = np.stack([np.sqrt(u1) * np.cos(2 * np.pi * u3), np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
                  np.sqrt(1 - u1) * np.cos(2 * np.pi * u2), np.sqrt(u1) * np.sin(2 * np.pi * u3)],
                 axis=1)
    q[q[:, 0] < 0] *= -1
    return q


def simulate_patterns(master: Master, rotations, detector) -> np.ndarray:
    """Project ``rotations`` (orix, 1D or 2D) with kikuchipy ``get_patterns``: float32 (n, sy, sx).

    Rotations are taken in row-major order (``Rotation(r.data.reshape(-1, 4))``, not the
    column-major ``flatten()``).
    """
    from orix.quaternion import Rotation

    rot = Rotation(np.asarray(rotations.data).reshape(-1, 4))
    kwargs = {} if master.energy is None else {"energy": master.energy}
    sim = master.signal.get_patterns(rotations=rot, detector=detector, dtype_out=np.float32,
                                     compute=True, show_progressbar=False, **kwargs)
    return np.asarray(sim.data, dtype=np.float32).reshape((-1,) + tuple(detector.shape))


def direction_cosines_of(detectors) -> np.ndarray:
    """Direction cosines (n, sy * sx, 3) of every pixel of each of ``detectors`` (kikuchipy
    ``EBSDDetector`` of one shape and one PC each), in the sample frame.

    kikuchipy's formula for one fixed PC (``_get_direction_cosines_for_fixed_pc``: pixel centres
    in gnomonic coordinates times PCz, turned into the sample frame, normalised), computed for
    all detectors in a few array operations: one call per detector cost half of a projection.
    """
    from kdeconv._kikuchipy import detector_to_sample_matrix

    n = len(detectors)
    nrows, ncols = detectors[0].shape
    bounds = np.stack([np.asarray(d.gnomonic_bounds, np.float64).reshape(4) for d in detectors])
    pcz = np.array([float(np.asarray(d.pcz).reshape(-1)[0]) for d in detectors])
    rotation = np.stack([detector_to_sample_matrix(d) for d in detectors])
    x_scale = (bounds[:, 1] - bounds[:, 0]) / ncols
    y_scale = (bounds[:, 3] - bounds[:, 2]) / nrows
    x = (bounds[:, :1] + x_scale[:, None] * np.arange(ncols) + x_scale[:, None] / 2) * pcz[:, None]
    y = (bounds[:, 3:] - y_scale[:, None] * np.arange(nrows) - y_scale[:, None] / 2) * pcz[:, None]
    # (x, y, pcz) of each pixel turned by the rotation: x varies along rows only, y along
    # columns only, so each component is an outer sum, not a (pixels x 3) matrix product. One
    # detector at a time: its arrays stay in cache (the whole stack at once was memory-bound).
    out = np.empty((n, nrows * ncols, 3))
    r = np.empty((3, nrows, ncols))
    norm = np.empty((nrows, ncols))
    for i in range(n):
        for k in range(3):
            np.add.outer(y[i] * rotation[i, k, 1], x[i] * rotation[i, k, 0], out=r[k])
            r[k] += pcz[i] * rotation[i, k, 2]
        np.sqrt(np.einsum("kyx,kyx->yx", r, r), out=norm)
        r /= norm
        out[i] = r.reshape(3, -1).T
    return out


def simulate_varied(master: Master, quaternions: np.ndarray, pcs: np.ndarray, tilts: np.ndarray,
                    sample_tilts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Project pattern i with its own PC ``pcs[i]`` (Bruker convention), camera tilt ``tilts[i]``
    and sample tilt ``sample_tilts[i]``; float32 ``(n, sy, sx)``, raw master intensities.
    """
    from kdeconv._kikuchipy import project_with_varying_pc

    q = np.ascontiguousarray(quaternions, dtype=np.float64).reshape(-1, 4)
    n = len(q)
    dc = direction_cosines_of([
        DetectorSpec(shape=shape, pc=pcs[i], tilt=tilts[i], sample_tilt=sample_tilts[i]).to_kikuchipy()
        for i in range(n)])
    npy, npx = master.upper.shape
    out = project_with_varying_pc(
        rotations=q, direction_cosines=dc, master_upper=master.upper, master_lower=master.lower,
        npx=int(npx), npy=int(npy), scale=float((npx - 1) / 2), rescale=False, out_min=1.0,
        out_max=2.0, dtype_out=np.float32)
    return out.reshape((n,) + tuple(int(s) for s in shape))
