"""Compute the shipped library of dynamical EBSD master patterns with de-ebsd.

    pip install 'kdeconv[masters]'                     # de-ebsd, pinned
    python workflows/make_master_library.py            # every phase, 10-30 kV
    python workflows/make_master_library.py --phases ni fe_alpha --energies 20

Each phase becomes ``kdeconv/simulate/library/<name>.h5`` in EMsoft's master-pattern layout
(square Lambert, both hemispheres, one map per beam energy), which ``kikuchipy.load(path,
projection="lambert", hemisphere="both")`` reads, and ``library.json`` records the provenance:
lattice, atoms, Debye-Waller factors, Bethe thresholds, dmin, Monte Carlo depth profile and the
de-ebsd version. A phase already in the library with the same settings is kept (rerun to resume).

Settings are EMsoft's (Bethe 4/8/50, dmin 0.05 nm, explicit Debye-Waller factors): with them
de-ebsd's Ni matches EMsoft's at r = 0.9996 given EMsoft's depth profile; its defaults do not.
The depth profile of every phase comes from de-ebsd's own Monte Carlo at the phase's density
and atomic number, so that Mg and W are not integrated over Ni's depths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdeconv.simulate.library import LIBRARY_DIR, PHASES, manifest_path, read_manifest, write_emsoft_master  # noqa: E402

BETHE = {"strong": 4.0, "weak": 8.0, "cutoff": 50.0}
DMIN_NM = 0.05
NPX = 150
MC_ELECTRONS = 200_000
ENERGIES_KEV = (10.0, 15.0, 20.0, 25.0, 30.0)
SAMPLE_TILT = 70.0


def settings(energies) -> dict:
    return {"bethe": BETHE, "dmin_nm": DMIN_NM, "npx": NPX, "mc_electrons": MC_ELECTRONS,
            "mc_seed": 0, "sample_tilt": SAMPLE_TILT, "energies_kev": [float(e) for e in energies],
            "backend": "bloch_prism", "energy_resolved": False}


def compute_phase(name: str, energies, threads: int) -> tuple[np.ndarray, dict]:
    """(n_energies, 2, 2*NPX+1, 2*NPX+1) float32 Lambert maps (north, south) and timings."""
    import de_ebsd as de
    import torch
    from de_ebsd.sim.montecarlo.depth import DepthDistribution

    torch.set_num_threads(threads)
    spec = PHASES[name]
    a, b, c, alpha, beta, gamma = spec["lattice_nm_deg"]
    sites = [de.AtomSite(element=el, position=tuple(float(v) for v in xyz), occupancy=float(occ),
                         debye_waller=float(dw)) for el, xyz, occ, dw in spec["atoms"]]
    crystal = de.Crystal.from_parameters(a=a, b=b, c=c, alpha=alpha, beta=beta, gamma=gamma,
                                         space_group=spec["space_group"], atoms=sites)
    maps, timing = [], {}
    for energy in energies:
        t0 = time.perf_counter()
        depth = DepthDistribution.from_simulation(crystal, float(energy), tilt_deg=SAMPLE_TILT,
                                                  n_electrons=MC_ELECTRONS, device="cpu", seed=0)
        t1 = time.perf_counter()
        sim = de.MasterPatternSimulator(
            crystal, de.Microscope(energy=float(energy) * 1e3, sample_tilt=SAMPLE_TILT), npx=NPX,
            dmin=DMIN_NM, bethe=de.BetheParameters(**BETHE), monte_carlo=depth)
        master = sim.compute(device="cpu")
        maps.append(master.data[0].detach().cpu().numpy().astype(np.float32))
        timing[f"{energy:g}"] = {"monte_carlo_s": round(t1 - t0, 1),
                                 "bloch_s": round(time.perf_counter() - t1, 1)}
        print(f"  {name} {energy:g} kV: MC {t1 - t0:.0f} s, Bloch {time.perf_counter() - t1:.0f} s",
              flush=True)
    return np.stack(maps), timing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", nargs="*", default=list(PHASES), choices=list(PHASES))
    parser.add_argument("--energies", nargs="*", type=float, default=list(ENERGIES_KEV))
    parser.add_argument("--out", type=Path, default=LIBRARY_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="recompute phases already present")
    args = parser.parse_args(argv)

    import de_ebsd

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(manifest_path(args.out))
    wanted = settings(args.energies)
    for name in args.phases:
        entry = manifest["phases"].get(name)
        path = args.out / f"{name}.h5"
        if (not args.force and entry and entry.get("settings") == wanted and path.is_file()
                and entry.get("de_ebsd_version") == de_ebsd.__version__):
            print(f"{name}: kept ({path.name})")
            continue
        print(f"{name}: computing {', '.join(f'{e:g}' for e in args.energies)} kV", flush=True)
        t0 = time.perf_counter()
        maps, timing = compute_phase(name, args.energies, args.threads)
        write_emsoft_master(path, name, maps, args.energies, wanted)
        spec = PHASES[name]
        manifest["phases"][name] = {
            "file": path.name, "formula": spec["formula"], "structure": spec["structure"],
            "space_group": spec["space_group"], "lattice_nm_deg": list(spec["lattice_nm_deg"]),
            "atoms": [{"element": el, "xyz": list(xyz), "occupancy": occ, "debye_waller_nm2": dw}
                      for el, xyz, occ, dw in spec["atoms"]],
            "settings": wanted, "de_ebsd_version": de_ebsd.__version__,
            "seconds": round(time.perf_counter() - t0, 1), "timing": timing,
            "bytes": path.stat().st_size}
        manifest_path(args.out).write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"{name}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
