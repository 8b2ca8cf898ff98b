"""Master-pattern sources, one loader for all of them: ``load_master(spec)``.

Sources: the Ni master pattern bundled with kikuchipy (no download), an EMsoft master-pattern
file, a kinematic master pattern built from a phase (space group, lattice, atoms) or a CIF, and
the shipped library of dynamical master patterns (``kdeconv.simulate.library``).
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
           "library_master", "MASTER_KINDS"]

MASTER_KINDS = ("nickel", "emsoft", "kinematic", "library")


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
    from kdeconv._kikuchipy import master_arrays

    upper, lower = master_arrays(signal, energy)
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
        phase = Phase(name=spec.get("name", "phase"), space_group=int(spec["space_group"]),
                      structure=Structure(atoms=atoms, lattice=lattice))
        return restore_fractional(phase, [a["xyz"] for a in spec["atoms"]])
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
                    for k in range(-hkl_max, hkl_max + 1) for l in range(-hkl_max, hkl_max + 1)  # noqa: E741
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


def restore_fractional(phase, xyz: list) -> Any:
    """Put the atoms of ``phase`` back at their fractional positions ``xyz`` (in order).

    orix re-bases hexagonal lattices (x along a*) while diffpy keeps the atoms' Cartesian
    positions, so after ``Phase(structure=...)`` an hcp atom at (1/3, 2/3, 1/4) reads
    (0.577, 0.577, 1/4); structure factors and band families need the fractions.
    """
    for atom, position in zip(phase.structure, xyz):
        atom.xyz = [float(v) for v in position]
    return phase


def library_master(phase: str, energy: float = 20) -> Master:
    """A phase of the shipped dynamical library at the library energy nearest ``energy`` (keV)."""
    from kdeconv.simulate.library import library_path, nearest_energy, phase_info

    master = emsoft_master(library_path(phase), nearest_energy(phase, energy))
    master.name = phase
    restore_fractional(master.signal.phase, [atom["xyz"] for atom in phase_info(phase)["atoms"]])
    return master


def load_master(spec: dict) -> Master:
    """Master pattern from a config dict ``{"kind": "nickel"|"emsoft"|"kinematic"|"library", ...}``
    (``library`` takes ``phase`` (a library name) and ``energy``)."""
    return _load_master_cached(json.dumps(spec, sort_keys=True))


# A worker holds every (phase, energy) a multi-phase config draws from; each is ~1 MB.
@functools.lru_cache(maxsize=64)
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
    if kind == "library":
        if not spec.get("phase"):
            raise InputError("a library master pattern needs 'phase' (see kdeconv.simulate.library_phases())")
        return library_master(spec["phase"], spec.get("energy") or 20)
    raise InputError(f"unknown master pattern kind {kind!r} (use {', '.join(MASTER_KINDS)})")


