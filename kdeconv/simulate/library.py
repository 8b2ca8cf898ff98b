"""The shipped library of dynamical master patterns: phase table, file layout, loader.

Each phase is one EMsoft-layout HDF5 file in ``kdeconv/simulate/library/`` (square Lambert, both
hemispheres, one map per beam energy, uint16 + gzip), so kikuchipy reads it directly::

    kp.load(kdeconv.simulate.library_path("fe_alpha"), projection="lambert", hemisphere="both")

``library.json`` beside the files records each phase's provenance (lattice, atoms, Debye-Waller
factors, simulation settings, de-ebsd version). ``workflows/make_master_library.py`` makes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kdeconv.errors import InputError

__all__ = ["LIBRARY_DIR", "PHASES", "library_phases", "library_path", "manifest_path",
           "read_manifest", "write_emsoft_master", "phase_info", "nearest_energy"]

LIBRARY_DIR = Path(__file__).parent / "library"

# name -> structure. Lattice in nm and degrees (EMsoft's units); atoms as
# (element, fractional xyz, occupancy, Debye-Waller B in nm^2) at room temperature.
PHASES: dict[str, dict] = {
    "ni": {"formula": "Ni", "structure": "fcc", "space_group": 225,
           "lattice_nm_deg": (0.35236, 0.35236, 0.35236, 90, 90, 90),
           "atoms": [("Ni", (0, 0, 0), 1.0, 0.0035)]},
    "al": {"formula": "Al", "structure": "fcc", "space_group": 225,
           "lattice_nm_deg": (0.40495, 0.40495, 0.40495, 90, 90, 90),
           "atoms": [("Al", (0, 0, 0), 1.0, 0.0085)]},
    "cu": {"formula": "Cu", "structure": "fcc", "space_group": 225,
           "lattice_nm_deg": (0.36149, 0.36149, 0.36149, 90, 90, 90),
           "atoms": [("Cu", (0, 0, 0), 1.0, 0.0055)]},
    "fe_gamma": {"formula": "Fe (austenite)", "structure": "fcc", "space_group": 225,
                 "lattice_nm_deg": (0.3595, 0.3595, 0.3595, 90, 90, 90),
                 "atoms": [("Fe", (0, 0, 0), 1.0, 0.0050)]},
    "fe_alpha": {"formula": "Fe (ferrite)", "structure": "bcc", "space_group": 229,
                 "lattice_nm_deg": (0.28665, 0.28665, 0.28665, 90, 90, 90),
                 "atoms": [("Fe", (0, 0, 0), 1.0, 0.0035)]},
    "mo": {"formula": "Mo", "structure": "bcc", "space_group": 229,
           "lattice_nm_deg": (0.31470, 0.31470, 0.31470, 90, 90, 90),
           "atoms": [("Mo", (0, 0, 0), 1.0, 0.0020)]},
    "ti_beta": {"formula": "Ti (beta)", "structure": "bcc", "space_group": 229,
                "lattice_nm_deg": (0.3282, 0.3282, 0.3282, 90, 90, 90),
                "atoms": [("Ti", (0, 0, 0), 1.0, 0.0060)]},
    "ti_alpha": {"formula": "Ti (alpha)", "structure": "hcp", "space_group": 194,
                 "lattice_nm_deg": (0.29508, 0.29508, 0.46855, 90, 90, 120),
                 "atoms": [("Ti", (1 / 3, 2 / 3, 0.25), 1.0, 0.0050)]},
    "mg": {"formula": "Mg", "structure": "hcp", "space_group": 194,
           "lattice_nm_deg": (0.32094, 0.32094, 0.52107, 90, 90, 120),
           "atoms": [("Mg", (1 / 3, 2 / 3, 0.25), 1.0, 0.0090)]},
    "zr": {"formula": "Zr", "structure": "hcp", "space_group": 194,
           "lattice_nm_deg": (0.32316, 0.32316, 0.51475, 90, 90, 120),
           "atoms": [("Zr", (1 / 3, 2 / 3, 0.25), 1.0, 0.0060)]},
    "si": {"formula": "Si", "structure": "diamond", "space_group": 227,
           "lattice_nm_deg": (0.54310, 0.54310, 0.54310, 90, 90, 90),
           "atoms": [("Si", (0.125, 0.125, 0.125), 1.0, 0.0046)]},
    "nial": {"formula": "NiAl (B2)", "structure": "B2", "space_group": 221,
             "lattice_nm_deg": (0.2887, 0.2887, 0.2887, 90, 90, 90),
             "atoms": [("Ni", (0, 0, 0), 1.0, 0.0050), ("Al", (0.5, 0.5, 0.5), 1.0, 0.0060)]},
    "ni3al": {"formula": "Ni3Al (L1_2)", "structure": "L1_2", "space_group": 221,
              "lattice_nm_deg": (0.3572, 0.3572, 0.3572, 90, 90, 90),
              "atoms": [("Al", (0, 0, 0), 1.0, 0.0060), ("Ni", (0, 0.5, 0.5), 1.0, 0.0050)]},
}

_Z = {"Mg": 12, "Al": 13, "Si": 14, "Ti": 22, "Fe": 26, "Ni": 28, "Cu": 29, "Zr": 40, "Mo": 42}
_CRYSTAL_SYSTEM = {225: 1, 229: 1, 221: 1, 227: 1, 194: 4}  # EMsoft: 1 cubic, 4 hexagonal


def manifest_path(folder: Path = LIBRARY_DIR) -> Path:
    return Path(folder) / "library.json"


def read_manifest(path: Path | None = None) -> dict:
    path = Path(path) if path is not None else manifest_path()
    if not path.is_file():
        return {"format": "kdeconv-master-library", "version": 1, "phases": {}}
    return json.loads(path.read_text())


def library_phases() -> list[str]:
    """Names of the phases shipped in the library (those with a file)."""
    phases = read_manifest()["phases"]
    return [name for name, entry in phases.items() if (LIBRARY_DIR / entry["file"]).is_file()]


def phase_info(name: str) -> dict:
    """The manifest entry of one library phase (provenance, energies, structure)."""
    phases = read_manifest()["phases"]
    if name not in phases:
        known = ", ".join(sorted(phases)) or "none (run workflows/make_master_library.py)"
        raise InputError(f"unknown library phase {name!r}; the library holds: {known}")
    return phases[name]


def nearest_energy(name: str, energy: float) -> float:
    """The library energy (keV) of phase ``name`` closest to ``energy``."""
    available = phase_info(name)["settings"]["energies_kev"]
    return float(min(available, key=lambda e: abs(e - float(energy))))


def library_path(name: str) -> Path:
    """The EMsoft-layout HDF5 file of a library phase."""
    path = LIBRARY_DIR / phase_info(name)["file"]
    if not path.is_file():
        raise InputError(f"library file of phase {name!r} is missing: {path} (reinstall kdeconv)")
    return path


def write_emsoft_master(path: Path, name: str, maps: np.ndarray, energies, settings: dict) -> Path:
    """Write ``maps`` (n_energies, 2, n, n) float (north, south Lambert) in EMsoft's layout.

    Intensities are scaled to uint16 over the full range of the file (kikuchipy's own bundled
    master is uint8): 1/65535 of the range is far below Poisson noise at any realistic dose.
    """
    import h5py

    spec = PHASES[name]
    maps = np.asarray(maps, dtype=np.float64)
    n_e, two, n, n2 = maps.shape
    if two != 2 or n != n2 or n % 2 == 0:
        raise ValueError(f"maps must be (n_energies, 2, 2*npx+1, 2*npx+1), got {maps.shape}")
    lo, hi = float(maps.min()), float(maps.max())
    scaled = np.rint((maps - lo) / (hi - lo) * 65535).astype(np.uint16)
    npx = (n - 1) // 2
    tmp = Path(str(path) + ".tmp")
    gz = {"compression": "gzip", "compression_opts": 9, "shuffle": True}

    def strings(group, key, value):
        group.create_dataset(key, data=np.array([value.encode()]))

    with h5py.File(tmp, "w") as f:
        cd = f.create_group("CrystalData")
        atoms = spec["atoms"]
        atom_data = np.array([[*xyz, occ, dw] for _, xyz, occ, dw in atoms], np.float32).T
        cd.create_dataset("AtomData", data=atom_data)
        cd.create_dataset("Atomtypes", data=np.array([_Z[el] for el, *_ in atoms], np.int32))
        cd.create_dataset("Natomtypes", data=np.array([len(atoms)], np.int32))
        cd.create_dataset("CrystalSystem", data=np.array([_CRYSTAL_SYSTEM[spec["space_group"]]], np.int32))
        cd.create_dataset("LatticeParameters", data=np.array(spec["lattice_nm_deg"], np.float64))
        cd.create_dataset("SpaceGroupNumber", data=np.array([spec["space_group"]], np.int32))
        cd.create_dataset("SpaceGroupSetting", data=np.array([2 if spec["space_group"] == 227 else 1],
                                                             np.int32))
        strings(cd, "Source", "kdeconv master library (de-ebsd)")
        em = f.create_group("EMData/EBSDmaster")
        em.create_dataset("mLPNH", data=scaled[None, :, 0], **gz)
        em.create_dataset("mLPSH", data=scaled[None, :, 1], **gz)
        em.create_dataset("EkeVs", data=np.asarray(energies, np.float32))
        em.create_dataset("numEbins", data=np.array([n_e], np.int32))
        em.create_dataset("numset", data=np.array([1], np.int32))
        bethe = settings["bethe"]
        em.create_dataset("BetheParameters", data=np.array(
            [bethe["strong"], bethe["weak"], bethe["cutoff"], 1.0], np.float32))
        strings(em, "xtalname", f"{name}/{name}.xtal")
        strings(f.create_group("EMheader/EBSDmaster"), "ProgramName", "EMEBSDmaster.f90")
        nml = f.create_group("NMLparameters")
        mnl = nml.create_group("EBSDMasterNameList")
        mnl.create_dataset("npx", data=np.array([npx], np.int32))
        mnl.create_dataset("dmin", data=np.array([settings["dmin_nm"]], np.float32))
        mc = nml.create_group("MCCLNameList")
        step = float(np.diff(energies)[0]) if n_e > 1 else 1.0
        mc.create_dataset("Ebinsize", data=np.array([step]))
        mc.create_dataset("Ehistmin", data=np.array([float(min(energies))]))
        mc.create_dataset("EkeV", data=np.array([float(max(energies))]))
        mc.create_dataset("sig", data=np.array([settings["sample_tilt"]]))
        strings(mc, "xtalname", f"{name}/{name}.xtal")
        kd = f.create_group("kdeconv")
        kd.attrs["provenance"] = json.dumps({"phase": name, **spec, "settings": settings})
        kd.attrs["intensity_range"] = [lo, hi]
    tmp.replace(path)
    return path
