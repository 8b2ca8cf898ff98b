"""Does a model read one crystal as one, whatever its bands look like?

    python workflows/check_single_crystal_looks.py [--checkpoint CKPT ...] [--n 24] [--out DIR]

Pure Ni patterns of the same random orientations in several looks (the library's dynamical
master at 20 kV, kikuchipy's bundled EMsoft master, an energy spread of 20/15/10 kV, a
kinematic master, half dynamical and half kinematic), each recorded as a binned real camera
records it (60x60, kikuchipy's real Ni PC, weak bands on a bright background, Poisson counts,
8 bits), then separated as ``separate`` does (map-mean static and dynamic background removal,
resampled to the model's working size). Reported per look: the median predicted minority
(0 for a pure pattern) and the share read above 0.1, per checkpoint, beside kikuchipy's 9 real
Ni patterns (two grains, each pattern pure).

Real detectors' bands are not the simulation's. A model that reads a kinematic pattern as two
crystals reads a real one as two as well.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PC = (0.425, 0.213, 0.501)  # kikuchipy.data.nickel_ebsd_small()
SHAPE = (60, 60)
BACKGROUND = {"mode": "raw", "static": "map_mean", "static_operation": "subtract",
              "dynamic": True, "dynamic_operation": "subtract", "dynamic_std": None}


def looks(n: int, seed: int) -> dict[str, np.ndarray]:
    """Look name -> float (n, 60, 60) patterns of the same n orientations, each zero mean, unit std."""
    import kikuchipy as kp
    from orix.quaternion import Rotation

    from kdeconv.config.detector import DetectorSpec
    from kdeconv.simulate.masters import kinematic_master, library_master, nickel_master
    from kdeconv.simulate.project import random_quaternions, simulate_patterns

    rot = Rotation(random_quaternions(np.random.default_rng(seed), n))
    det = DetectorSpec(shape=SHAPE, pc=PC, tilt=0.0, sample_tilt=70.0).to_kikuchipy()

    def unit(x):
        return (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)

    dyn = {e: unit(simulate_patterns(library_master("ni", e), rot, det)) for e in (10.0, 15.0, 20.0)}
    ni_phase = kp.data.nickel_ebsd_master_pattern_small().phase
    kin = unit(simulate_patterns(kinematic_master(ni_phase), rot, det))
    return {"dynamical (library, 20 kV)": dyn[20.0],
            "dynamical (kikuchipy's EMsoft Ni)": unit(simulate_patterns(nickel_master(20), rot, det)),
            "energy spread 20/15/10 kV": 0.5 * dyn[20.0] + 0.3 * dyn[15.0] + 0.2 * dyn[10.0],
            "half dynamical, half kinematic": 0.5 * dyn[20.0] + 0.5 * kin,
            "kinematic": kin}


def record(patterns: np.ndarray, seed: int, signal: float = 0.25, dose: float = 5000.0,
           blur: float = 0.8) -> np.ndarray:
    """A binned real camera's uint8 patterns of ``patterns``: blur, weak bands on a bright
    off-centre background, Poisson counts (configs/check_map_real_binned.yaml's camera)."""
    from scipy.ndimage import gaussian_filter

    from kdeconv.generate.augment import background_field

    rng = np.random.default_rng(seed)
    g = background_field(SHAPE, 0.6, 0.0, -0.1)
    m = np.stack([gaussian_filter(x, blur) for x in patterns])
    m = (m - m.min(axis=(1, 2), keepdims=True)) / np.ptp(m, axis=(1, 2), keepdims=True)
    counts = rng.poisson(dose * g * ((1 - signal) + signal * m)) / dose * 255
    return np.clip(counts, 0, 255).astype(np.uint8)


def predicted_minority(separator, raw: np.ndarray) -> np.ndarray:
    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.preprocess.resample import working_range_of, working_shape
    from kdeconv.separate.chunk import preprocess_patterns

    work = working_shape(raw.shape[-2:], working_range_of(separator.meta))
    static = static_background_from_mean(raw.astype(np.float32).mean(axis=0), "auto")
    x = preprocess_patterns(raw, BACKGROUND, static, work)
    return separator.separate(x)[2][:, 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", nargs="+", default=[None])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/single_crystal_looks"))
    args = parser.parse_args()

    import kikuchipy as kp

    from kdeconv.model.checkpoint import load_separator

    recorded = {name: record(p, args.seed) for name, p in looks(args.n, args.seed).items()}
    recorded["real Ni (kikuchipy, 9 patterns)"] = kp.data.nickel_ebsd_small().data.reshape(9, *SHAPE)
    rows = []
    for ckpt in args.checkpoint:
        separator = load_separator(None if ckpt in (None, "default") else ckpt, device="cpu")
        for name, raw in recorded.items():
            w = predicted_minority(separator, raw)
            rows.append({"checkpoint": ckpt or "shipped", "sha256": separator.sha256[:12], "look": name,
                         "median_predicted_minority": round(float(np.median(w)), 3),
                         "read_above_0.1": round(float((w > 0.1).mean()), 3)})
            print(f"{rows[-1]['sha256']}  {name:36s} median {rows[-1]['median_predicted_minority']:.3f}"
                  f"  above 0.1: {rows[-1]['read_above_0.1']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "looks.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
