"""Hough/Radon indexing through kikuchipy (PyEBSDIndex) and misorientation with crystal symmetry.

The first call in a process compiles PyEBSDIndex with numba (about 70 s on 2 cores; numba caches
it on disk, so later processes start in seconds).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["IndexResult", "make_detector", "bundled_ni_phase", "index_patterns", "misorientation_deg"]


@dataclass
class IndexResult:
    """Per pattern: quaternions (n, 4) (NaN where not indexed), PyEBSDIndex's confidence metric
    ``cm``, band matches ``nmatch`` and ``indexed`` (a phase was found)."""

    quaternions: np.ndarray
    cm: np.ndarray
    nmatch: np.ndarray
    indexed: np.ndarray


def make_detector(info: dict[str, Any]):
    """``EBSDDetector`` from a store's detector attrs: shape, pc, sample_tilt, tilt, binning, convention."""
    from kikuchipy.detectors import EBSDDetector

    if not info or "shape" not in info or "pc" not in info:
        from kdeconv.errors import InputError

        raise InputError("the truth store has no detector (shape and pc) in its attrs; "
                         "give detector: in the evaluate config")
    return EBSDDetector(
        shape=tuple(int(v) for v in info["shape"]),
        pc=tuple(float(v) for v in np.asarray(info["pc"], float).reshape(-1)[:3]),
        sample_tilt=float(info.get("sample_tilt", 70.0)),
        tilt=float(info.get("tilt", 0.0)),
        binning=int(info.get("binning", 1)),
        convention=info.get("convention") or "bruker",
    )


def bundled_ni_phase():
    """The Ni phase of kikuchipy's bundled (offline) master pattern."""
    import kikuchipy as kp

    mp = kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="upper")
    return mp.phase


def index_patterns(patterns: np.ndarray, detector, phase, chunk: int = 4096) -> IndexResult:
    """Index a stack (n, sy, sx) with ``EBSD.hough_indexing``; flat patterns are left unindexed.

    PyEBSDIndex cannot index an all-zero pattern (no bands) and may divide by zero on it, so those
    never reach it.
    """
    import kikuchipy as kp
    from orix.crystal_map import PhaseList

    stack = np.asarray(patterns).reshape((-1,) + tuple(np.shape(patterns)[-2:]))
    n = stack.shape[0]
    quats = np.full((n, 4), np.nan)
    cm = np.zeros(n, np.float32)
    nmatch = np.zeros(n, np.int32)
    indexed = np.zeros(n, bool)
    flat = stack.reshape(n, -1)
    has_contrast = flat.max(axis=1) > flat.min(axis=1)
    todo = np.flatnonzero(has_contrast)
    if todo.size == 0:
        return IndexResult(quats, cm, nmatch, indexed)

    phase_list = PhaseList(phase)
    indexer = detector.get_indexer(phase_list)
    for start in range(0, todo.size, chunk):
        sel = todo[start:start + chunk]
        signal = kp.signals.EBSD(stack[sel].astype(np.float32))
        signal.detector = detector
        with contextlib.redirect_stdout(io.StringIO()):  # PyEBSDIndex prints a banner per call
            xmap = signal.hough_indexing(phase_list=phase_list, indexer=indexer, verbose=0)
        # row-major (n, 4): orix flatten() is column-major (see NOTES)
        rot = xmap.rotations.data.reshape(-1, 4)
        ok = np.asarray(xmap.phase_id).reshape(-1) >= 0
        quats[sel[ok]] = rot[ok]
        indexed[sel] = ok
        cm[sel] = np.asarray(xmap.prop["cm"]).reshape(-1)
        nmatch[sel] = np.asarray(xmap.prop["nmatch"]).reshape(-1)
    return IndexResult(quats, cm, nmatch, indexed)


def misorientation_deg(q1: np.ndarray, q2: np.ndarray, point_group) -> np.ndarray:
    """Disorientation angle in degrees between paired quaternions (n, 4); NaN where either is NaN."""
    from orix.quaternion import Orientation

    q1 = np.asarray(q1, np.float64).reshape(-1, 4)
    q2 = np.asarray(q2, np.float64).reshape(-1, 4)
    out = np.full(q1.shape[0], np.nan)
    ok = np.isfinite(q1).all(axis=1) & np.isfinite(q2).all(axis=1)
    if ok.any():
        o1 = Orientation(q1[ok], symmetry=point_group)
        o2 = Orientation(q2[ok], symmetry=point_group)
        out[ok] = np.asarray(o1.angle_with(o2, degrees=True)).reshape(-1)
    return out
