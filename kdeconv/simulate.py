"""Master-pattern sources and projection of pure patterns with known orientations.

Sources: the Ni master pattern bundled with kikuchipy (no download), an EMsoft master-pattern
file, or a kinematic master pattern built from a phase (space group, lattice, atoms) or a CIF.
``simulate_patterns`` is the plain kikuchipy projection for one detector; ``simulate_varied``
projects each pattern with its own detector geometry (PC, tilts), which ``get_patterns`` cannot
do for tilts, by calling kikuchipy's numba kernels directly (checked against ``get_patterns``
in tests/test_simulate.py).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.errors import InputError

__all__ = ["Master", "load_master", "nickel_master", "emsoft_master", "kinematic_master",
           "simulate_patterns", "simulate_varied", "random_quaternions", "make_detector"]


@dataclass
class Master:
    """A Lambert master pattern ready for projection."""

    signal: Any                 # kikuchipy EBSDMasterPattern (lambert)
    energy: float | None        # energy to pass to get_patterns (None for kinematic)
    upper: np.ndarray           # float32 (npy, npx) upper hemisphere
    lower: np.ndarray           # float32 (npy, npx) lower hemisphere
    name: str

    @property
    def phase(self):
        return self.signal.phase


def _arrays(signal, energy) -> tuple[np.ndarray, np.ndarray]:
    upper, lower = signal._get_master_pattern_arrays_from_energy(energy)
    return (np.ascontiguousarray(upper, dtype=np.float32),
            np.ascontiguousarray(lower, dtype=np.float32))


def nickel_master(energy: float = 20) -> Master:
    """kikuchipy's bundled Ni master pattern (local file, no download)."""
    import kikuchipy as kp

    signal = kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="upper")
    upper, lower = _arrays(signal, energy)
    return Master(signal, energy, upper, lower, "ni")


def emsoft_master(path: str | Path, energy: float = 20) -> Master:
    """An EMsoft master-pattern HDF5 file read with ``kikuchipy.load`` (Lambert, both hemispheres)."""
    import kikuchipy as kp

    path = Path(path)
    if not path.is_file():
        raise InputError(f"master pattern file not found: {path}")
    try:
        signal = kp.load(path, projection="lambert", hemisphere="both")
    except Exception as err:  # kikuchipy raises many types for unreadable files
        raise InputError(f"cannot read master pattern {path}: {type(err).__name__}: {err}") from None
    try:
        upper, lower = _arrays(signal, energy)
    except Exception as err:
        raise InputError(f"master pattern {path} has no energy {energy} keV: {err}") from None
    name = signal.phase.name
    return Master(signal, energy, upper, lower, name if name and name != "None" else path.stem)


def _phase_from_spec(spec: dict) -> Any:
    from diffpy.structure import Atom, Lattice, Structure
    from orix.crystal_map import Phase

    try:
        lattice = Lattice(*spec["lattice"])
        atoms = [Atom(a["element"], a["xyz"], occupancy=a.get("occupancy", 1.0),
                      Uisoequiv=a.get("uiso", 0.005)) for a in spec["atoms"]]
        return Phase(name=spec.get("name", "phase"), space_group=int(spec["space_group"]),
                     structure=Structure(atoms=atoms, lattice=lattice))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"bad phase description: {type(err).__name__}: {err}") from None


def kinematic_master(phase: Any = None, cif: str | Path | None = None, *, hkl_max: int = 3,
                     half_size: int = 250, voltage: float = 20e3, clip_percentile: float = 99.5
                     ) -> Master:
    """Kinematic master pattern from an orix ``Phase``, a phase dict, or a CIF file.

    Zone axes of kinematic patterns are far too bright; intensities are clipped at
    ``clip_percentile`` so bands keep their contrast.
    """
    from diffsims.crystallography import ReciprocalLatticeVector
    from kikuchipy.simulations import KikuchiPatternSimulator
    from orix.crystal_map import Phase

    if cif is not None:
        cif = Path(cif)
        if not cif.is_file():
            raise InputError(f"CIF file not found: {cif}")
        try:
            phase = Phase.from_cif(str(cif))
        except Exception as err:
            raise InputError(f"cannot read CIF {cif}: {type(err).__name__}: {err}") from None
    elif isinstance(phase, dict):
        phase = _phase_from_spec(phase)
    if phase is None:
        raise InputError("kinematic master pattern needs a phase or a CIF")
    hkl = np.array([(h, k, l) for h in range(-hkl_max, hkl_max + 1)
                    for k in range(-hkl_max, hkl_max + 1) for l in range(-hkl_max, hkl_max + 1)
                    if (h, k, l) != (0, 0, 0)])
    try:
        ref = ReciprocalLatticeVector(phase=phase, hkl=hkl).unique(use_symmetry=True)
        ref = ref.symmetrise().unique()
        ref.sanitise_phase()
        ref.calculate_structure_factor()
        ref.calculate_theta(voltage)
        strong = np.abs(ref.structure_factor) > 1e-2 * np.abs(ref.structure_factor).max()
        ref = ref[strong]
        sim = KikuchiPatternSimulator(ref)
        # kikuchipy draws a tqdm bar here with no switch to turn it off.
        with contextlib.redirect_stderr(io.StringIO()):
            mp = sim.calculate_master_pattern(half_size=half_size, hemisphere="both")
        signal = mp.as_lambert(show_progressbar=False)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot build kinematic master pattern for {phase.name}: "
                         f"{type(err).__name__}: {err}") from None
    upper, lower = _arrays(signal, None)
    hi = np.percentile(np.concatenate([upper.ravel(), lower.ravel()]), clip_percentile)
    np.minimum(upper, hi, out=upper)
    np.minimum(lower, hi, out=lower)
    return Master(signal, None, upper, lower, phase.name or "kinematic")


def load_master(spec: dict) -> Master:
    """Master pattern from a config dict ``{"kind": "nickel"|"emsoft"|"kinematic", ...}``."""
    return _load_master_cached(json.dumps(spec, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _load_master_cached(key: str) -> Master:
    # One load per worker process: tasks carry the small config, never the arrays.
    spec = json.loads(key)
    kind = spec.get("kind", "nickel")
    if kind == "nickel":
        return nickel_master(spec.get("energy") or 20)
    if kind == "emsoft":
        return emsoft_master(spec["path"], spec.get("energy") or 20)
    if kind == "kinematic":
        return kinematic_master(phase=spec.get("phase"), cif=spec.get("cif"),
                                hkl_max=spec.get("hkl_max", 3),
                                clip_percentile=spec.get("clip_percentile", 99.5))
    raise InputError(f"unknown master pattern kind {kind!r} (use nickel, emsoft or kinematic)")


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


def make_detector(shape, pc, tilt: float = 0.0, sample_tilt: float = 70.0):
    from kikuchipy.detectors import EBSDDetector

    return EBSDDetector(shape=tuple(int(s) for s in shape), pc=np.asarray(pc, dtype=np.float64),
                        tilt=float(tilt), sample_tilt=float(sample_tilt))


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
    from kikuchipy.signals.util._master_pattern import (
        _get_direction_cosines_from_detector, _project_patterns_from_master_pattern_with_varying_pc)

    q = np.ascontiguousarray(quaternions, dtype=np.float64).reshape(-1, 4)
    n = len(q)
    size = int(shape[0]) * int(shape[1])
    dc = np.empty((n, size, 3), dtype=np.float64)
    for i in range(n):
        det = make_detector(shape, pcs[i], tilts[i], sample_tilts[i])
        dc[i] = _get_direction_cosines_from_detector(det)
    npy, npx = master.upper.shape
    out = _project_patterns_from_master_pattern_with_varying_pc(
        rotations=q, direction_cosines=dc, master_upper=master.upper, master_lower=master.lower,
        npx=int(npx), npy=int(npy), scale=float((npx - 1) / 2), rescale=False, out_min=1.0,
        out_max=2.0, dtype_out=np.float32)
    return out.reshape((n,) + tuple(int(s) for s in shape))
