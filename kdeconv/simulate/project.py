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

__all__ = ["simulate_patterns", "simulate_varied", "random_quaternions"]


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


def simulate_varied(master: Master, quaternions: np.ndarray, pcs: np.ndarray, tilts: np.ndarray,
                    sample_tilts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Project pattern i with its own PC ``pcs[i]`` (Bruker convention), camera tilt ``tilts[i]``
    and sample tilt ``sample_tilts[i]``; float32 ``(n, sy, sx)``, raw master intensities.
    """
    from kdeconv._kikuchipy import direction_cosines, project_with_varying_pc

    q = np.ascontiguousarray(quaternions, dtype=np.float64).reshape(-1, 4)
    n = len(q)
    size = int(shape[0]) * int(shape[1])
    dc = np.empty((n, size, 3), dtype=np.float64)
    for i in range(n):
        det = DetectorSpec(shape=shape, pc=pcs[i], tilt=tilts[i], sample_tilt=sample_tilts[i]).to_kikuchipy()
        dc[i] = direction_cosines(det)
    npy, npx = master.upper.shape
    out = project_with_varying_pc(
        rotations=q, direction_cosines=dc, master_upper=master.upper, master_lower=master.lower,
        npx=int(npx), npy=int(npy), scale=float((npx - 1) / 2), rescale=False, out_min=1.0,
        out_max=2.0, dtype_out=np.float32)
    return out.reshape((n,) + tuple(int(s) for s in shape))
