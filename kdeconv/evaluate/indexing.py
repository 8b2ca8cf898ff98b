"""Hough/Radon indexing through kikuchipy (PyEBSDIndex) and misorientation with crystal symmetry.

The first call in a process compiles PyEBSDIndex with numba (about 70 s on 2 cores; numba caches
it on disk, so later processes start in seconds).

Several phases index together (one PyEBSDIndex phase list): each pattern gets the phase whose
bands it matches best, and its ``phase_id`` (the phase's position in the list). PyEBSDIndex
needs the band families to look for; without them it takes the fcc families for every space
group, so ``reflector_families`` picks each phase's own: the shortest reciprocal-lattice vectors
whose kinematic structure factor is not (near) extinct, one per band direction.
"""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass

import numpy as np

__all__ = ["IndexResult", "bundled_ni_phase", "index_patterns", "misorientation_deg",
           "reflector_families"]


@dataclass
class IndexResult:
    """Per pattern: quaternions (n, 4) (NaN where not indexed), PyEBSDIndex's confidence metric
    ``cm``, band matches ``nmatch``, ``indexed`` (a phase was found) and ``phase_id`` (the
    position of the found phase in the phase list, -1 where none)."""

    quaternions: np.ndarray
    cm: np.ndarray
    nmatch: np.ndarray
    indexed: np.ndarray
    phase_id: np.ndarray | None = None

    def __post_init__(self):
        if self.phase_id is None:
            self.phase_id = np.where(np.asarray(self.indexed, bool), 0, -1).astype(np.int16)


def bundled_ni_phase():
    """The Ni phase of kikuchipy's bundled (offline) master pattern."""
    from kdeconv.simulate import load_master

    return load_master({"kind": "nickel"}).phase


# ------------------------------------------------------------------------------- band families

def _atom_number(element: str) -> int:
    from diffsims.structure_factor.atomic_scattering_parameters import get_element_id_from_string

    text = str(element).strip()
    return int(text) if text.isdigit() else int(get_element_id_from_string(text.rstrip("0123456789+-")))


def _standard_fractional(phase) -> list[tuple[int, np.ndarray, float]]:
    """(Z, fractional xyz in the standard setting, occupancy) of the phase's atoms.

    orix re-bases a hexagonal lattice (x || a) while diffpy keeps each atom's Cartesian position,
    so the fractional coordinates orix shows are no longer the ones given. Converting the
    Cartesian positions back with the standard lattice of the same parameters recovers them (for
    cubic lattices this changes nothing).
    """
    from diffpy.structure import Lattice

    standard = Lattice(*phase.structure.lattice.abcABG())
    return [(_atom_number(a.element), np.asarray(standard.fractional(a.xyz_cartn), float), float(a.occupancy))
            for a in phase.structure]


def _orbits(ops_r: np.ndarray, ops_t: np.ndarray, xyz: np.ndarray) -> list[np.ndarray]:
    """Distinct positions (mod 1) of each atom of ``xyz`` (m, 3) under the operations."""
    out = []
    for p in np.mod(np.einsum("kij,mj->mki", ops_r, xyz) + ops_t[None], 1.0):
        key = np.round(p * 1e4).astype(np.int64) % 10000
        _, first = np.unique(key, axis=0, return_index=True)
        out.append(p[np.sort(first)])
    return out


def _expanded_atoms(space_group: int, atoms) -> tuple[np.ndarray, np.ndarray]:
    """All positions of the unit cell (k, 3) and their weights Z * occupancy (k,).

    diffpy knows one origin per space group (ITA origin choice 1) while files may use the other
    (EMsoft's Si: Fd-3m origin choice 2, atom at 1/8 1/8 1/8). Atoms given in the other origin
    land on general positions and multiply; the whole structure is then shifted (by a multiple
    of 1/8) to where its atoms have the fewest positions. A common shift leaves |F| unchanged.
    """
    from diffpy.structure.spacegroups import GetSpaceGroup

    ops = GetSpaceGroup(int(space_group)).symop_list
    ops_r = np.array([op.R for op in ops], float)
    ops_t = np.array([op.t for op in ops], float)
    xyz = np.array([a[1] for a in atoms], float)
    best = _orbits(ops_r, ops_t, xyz)
    grid = np.arange(8) / 8
    for shift in np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)[1:]:
        trial = _orbits(ops_r, ops_t, xyz + shift)
        if sum(map(len, trial)) < sum(map(len, best)):
            best = trial
    positions = np.concatenate(best)
    weights = np.concatenate([np.full(len(o), z * occ) for o, (z, _, occ) in zip(best, atoms)])
    return positions, weights


@functools.lru_cache(maxsize=32)
def _families_cached(key: str, n: int, min_structure_factor: float, hkl_max: int) -> tuple:
    import json

    from diffpy.structure import Lattice, Structure
    from diffsims.crystallography import ReciprocalLatticeVector
    from orix.crystal_map import Phase

    spec = json.loads(key)
    geometry = Phase(space_group=spec["space_group"], structure=Structure(lattice=Lattice(*spec["lattice"])))
    grid = np.arange(-hkl_max, hkl_max + 1)
    hkl = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[np.abs(hkl).sum(1) > 0]
    ref = ReciprocalLatticeVector(phase=geometry, hkl=hkl).unique(use_symmetry=True)
    families = np.rint(ref.hkl).astype(int)
    g = np.asarray(ref.gspacing, float)
    positions, weights = np.asarray(spec["positions"]), np.asarray(spec["weights"])
    # Structure factor with f ~ Z, over its largest possible value: 0 extinct, 1 all in phase.
    phases = np.exp(2j * np.pi * families @ positions.T)
    strength = np.abs(phases @ weights) / weights.sum()
    keep, seen = [], set()
    for i in np.argsort(g, kind="stable"):
        if strength[i] < min_structure_factor:
            continue
        h = families[i]
        primitive = h // np.gcd.reduce(np.abs(h))
        sym = np.rint(ReciprocalLatticeVector(phase=geometry, hkl=primitive).symmetrise().hkl).astype(int)
        direction = max(map(tuple, sym))  # one key per band direction: higher orders share it
        if direction in seen:
            continue
        seen.add(direction)
        keep.append(tuple(int(v) for v in h))
        if len(keep) == n:
            break
    return tuple(keep)


def reflector_families(phase, n: int | None = None, min_structure_factor: float = 0.25,
                       hkl_max: int = 4) -> np.ndarray:
    """Band families {hkl} (k, 3) for PyEBSDIndex: the ``n`` shortest reciprocal-lattice vectors,
    one per band direction, whose structure factor (f ~ Z) is at least ``min_structure_factor``
    of its all-in-phase value.

    ``n`` defaults to 4 for cubic phases and 8 otherwise, as PyEBSDIndex's own fcc, bcc and hcp
    sets, which this reproduces ({111} {200} {220} {311}; {110} {200} {211} {310}; hcp's eight).
    Weak superlattice families (Ni3Al's {100}: 0.15) stay out; B2 NiAl's {100} (0.37) is in.
    """
    import json

    sg = phase.space_group.number
    if n is None:
        n = 4 if phase.point_group.name in ("m-3m", "m-3", "432", "-43m", "23") else 8
    positions, weights = _expanded_atoms(sg, _standard_fractional(phase))
    key = json.dumps({"space_group": int(sg), "lattice": [float(v) for v in phase.structure.lattice.abcABG()],
                      "positions": np.round(positions, 6).tolist(), "weights": weights.tolist()})
    return np.array(_families_cached(key, int(n), float(min_structure_factor), int(hkl_max)), int)


# ---------------------------------------------------------------------------------- indexing

def _phase_list(phases):
    from orix.crystal_map import Phase, PhaseList

    phases = [phases] if isinstance(phases, Phase) else list(phases)
    return PhaseList(phases=phases, ids=list(range(len(phases)))), phases


def index_patterns(patterns: np.ndarray, detector, phases, chunk: int | None = None,
                   reflectors: list | None = None, rows: np.ndarray | None = None) -> IndexResult:
    """Index a stack (n, sy, sx) with ``EBSD.hough_indexing`` against one orix ``Phase`` or a
    list of them (``phase_id`` says which); flat patterns are left unindexed.

    ``reflectors``: band families per phase; default ``reflector_families`` of each. ``rows``
    (bool (n,)): index only these; the others are left unindexed.
    PyEBSDIndex cannot index an all-zero pattern (no bands) and may divide by zero on it, so those
    never reach it.
    """
    import kikuchipy as kp

    stack = np.asarray(patterns).reshape((-1,) + tuple(np.shape(patterns)[-2:]))
    n = stack.shape[0]
    quats = np.full((n, 4), np.nan)
    cm = np.zeros(n, np.float32)
    nmatch = np.zeros(n, np.int32)
    indexed = np.zeros(n, bool)
    phase_id = np.full(n, -1, np.int16)
    flat = stack.reshape(n, -1)
    has_contrast = flat.max(axis=1) > flat.min(axis=1)
    if rows is not None:
        has_contrast &= np.asarray(rows, bool).reshape(-1)
    todo = np.flatnonzero(has_contrast)
    if todo.size == 0:
        return IndexResult(quats, cm, nmatch, indexed, phase_id)

    if chunk is None:  # float32 copies of ~256 MB per call to PyEBSDIndex
        from kdeconv.evaluate.metrics import slice_rows

        chunk = slice_rows(stack.shape[-2:], 4, 256.0, 4096)
    phase_list, phase_objs = _phase_list(phases)
    if reflectors is None:
        reflectors = [reflector_families(p) for p in phase_objs]
    indexer = detector.get_indexer(phase_list, reflectors)
    for start in range(0, todo.size, chunk):
        sel = todo[start:start + chunk]
        signal = kp.signals.EBSD(stack[sel].astype(np.float32))
        signal.detector = detector
        with contextlib.redirect_stdout(io.StringIO()):  # PyEBSDIndex prints a banner per call
            xmap = signal.hough_indexing(phase_list=phase_list, indexer=indexer, verbose=0)
        # row-major (n, 4): orix flatten() is column-major (see NOTES)
        rot = xmap.rotations.data.reshape(-1, 4)
        pid = np.asarray(xmap.phase_id).reshape(-1)
        ok = pid >= 0
        quats[sel[ok]] = rot[ok]
        indexed[sel] = ok
        phase_id[sel] = pid
        cm[sel] = np.asarray(xmap.prop["cm"]).reshape(-1)
        nmatch[sel] = np.asarray(xmap.prop["nmatch"]).reshape(-1)
    return IndexResult(quats, cm, nmatch, indexed, phase_id)


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
