"""The crystal reference that evaluation indexes against and simulates from.

Only kikuchipy's bundled Ni master pattern is offline on every machine, so it is the one supported
reference; other names are refused with a clear message instead of a download attempt.
"""

from __future__ import annotations

import functools

import numpy as np

from kdeconv.errors import InputError

__all__ = ["KNOWN_PHASES", "load_master_pattern", "simulate_at"]

KNOWN_PHASES = ("ni",)


@functools.lru_cache(maxsize=2)
def load_master_pattern(name: str = "ni"):
    """(master pattern, energy kwargs) for a phase name; cached per process (the file is ~4 MB)."""
    if name.lower() not in KNOWN_PHASES:
        raise InputError(f"unknown phase '{name}' for evaluation; known: {', '.join(KNOWN_PHASES)}")
    import kikuchipy as kp

    mp = kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="upper")
    return mp, {"energy": 20}


def simulate_at(quaternions: np.ndarray, detector, phase_name: str = "ni") -> np.ndarray:
    """Simulated patterns (n, sy, sx) float32 at the given orientations; NaN rows give zeros."""
    from orix.quaternion import Rotation

    q = np.asarray(quaternions, np.float64).reshape(-1, 4)
    out = np.zeros((q.shape[0],) + tuple(detector.shape), np.float32)
    ok = np.isfinite(q).all(axis=1)
    if ok.any():
        mp, kwargs = load_master_pattern(phase_name)
        sim = mp.get_patterns(rotations=Rotation(q[ok]), detector=detector, dtype_out=np.float32,
                              compute=True, show_progressbar=False, **kwargs)
        out[ok] = np.asarray(sim.data).reshape((-1,) + tuple(detector.shape))
    return out
