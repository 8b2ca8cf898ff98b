"""The crystal references that evaluation indexes against and simulates from.

Every reference is a master pattern loaded through ``kdeconv.simulate.load_master`` (kikuchipy's
bundled Ni, a phase of kdeconv's dynamical library, an EMsoft file or a kinematic pattern): the
truth store names each phase's master spec, so a map of any phase, or of several, is indexed
against the phases it was made of and its residual baseline simulates from the same masters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kdeconv.errors import InputError

__all__ = ["RefPhase", "known_phases", "master_spec_for", "reference_phases", "load_master_pattern",
           "simulate_at"]


def known_phases() -> list[str]:
    """Phase names evaluation resolves by name: ``ni`` (kikuchipy's bundled Ni) and the library's."""
    from kdeconv.simulate import library_phases

    return ["ni"] + [name for name in library_phases() if name != "ni"]


def master_spec_for(name: str) -> dict:
    """The ``load_master`` spec of a phase name: ``ni`` is kikuchipy's bundled Ni (as ever),
    any other name a phase of the shipped library."""
    from kdeconv.simulate import library_phases

    key = str(name).lower()
    if key == "ni":
        return {"kind": "nickel"}
    if key in library_phases():
        return {"kind": "library", "phase": key}
    raise InputError(f"unknown phase '{name}' for evaluation; known: {', '.join(known_phases())}")


@dataclass
class RefPhase:
    """One phase of the reference: its name, master spec, and the orix ``Phase`` that indexing
    and symmetry use (named ``name``: names in a kikuchipy phase list must differ)."""

    name: str
    spec: dict
    phase: Any = field(repr=False)

    @property
    def master(self):
        from kdeconv.simulate import load_master

        return load_master(self.spec)  # cached per process

    @property
    def point_group(self):
        return self.phase.point_group


def reference_phases(phases: list[dict]) -> list[RefPhase]:
    """``RefPhase`` per entry ``{"name", "master"}`` (a truth store's ``phases`` attr)."""
    from kdeconv.simulate import load_master

    out = []
    for entry in phases:
        spec = entry.get("master") or master_spec_for(entry["name"])
        phase = load_master(spec).phase.deepcopy()
        phase.name = str(entry["name"])
        out.append(RefPhase(str(entry["name"]), spec, phase))
    if len({p.name for p in out}) != len(out):
        raise InputError(f"phase names repeat in {[p.name for p in out]}: each phase needs its own name")
    return out


def load_master_pattern(name: str = "ni"):
    """(kikuchipy master pattern, ``get_patterns`` energy kwargs) of a phase name."""
    from kdeconv.simulate import load_master

    master = load_master(master_spec_for(name))
    return master.signal, ({} if master.energy is None else {"energy": master.energy})


def simulate_at(quaternions: np.ndarray, detector, phase: str | dict | list = "ni",
                phase_id: np.ndarray | None = None) -> np.ndarray:
    """Simulated patterns (n, sy, sx) float32 at the given orientations; NaN rows give zeros.

    ``phase``: a phase name, a ``load_master`` spec, or a list of ``RefPhase``; with a list,
    ``phase_id`` (n,) says which phase each row is simulated in (-1: zeros).
    """
    from orix.quaternion import Rotation

    from kdeconv.simulate import load_master, simulate_patterns

    q = np.asarray(quaternions, np.float64).reshape(-1, 4)
    out = np.zeros((q.shape[0],) + tuple(detector.shape), np.float32)
    ok = np.isfinite(q).all(axis=1)
    if isinstance(phase, list):
        masters = [p.master for p in phase]
        ids = np.full(q.shape[0], 0) if phase_id is None else np.asarray(phase_id).reshape(-1)
    else:
        masters = [load_master(phase if isinstance(phase, dict) else master_spec_for(phase))]
        ids = np.zeros(q.shape[0], int)
    for k, master in enumerate(masters):
        rows = ok & (ids == k)
        if rows.any():
            out[rows] = simulate_patterns(master, Rotation(q[rows]), detector)
    return out
