"""What a camera leaves of B: the oracle residual of a simulated map, indexed.

    python workflows/check_camera_cap.py MAP_DIR/truth.zarr [...] [--minority-from 0.25] [--out FILE]

For every mixed pixel of a ``simulate-map`` truth store (raw style), the exact expected
recording of its dominant part, wA·A through the map's own camera (true pattern, true weight,
background, gain, blur, 8-bit scale: ``simulate_map.expected_recording``), is subtracted from
the recorded C. What is left is wB·B plus all of C's noise: the most any separator could hand
the indexer without a prior on B. It is indexed with PyEBSDIndex as ``evaluate`` indexes B.

Printed per minority bin: the share of oracle residuals that index to B's grain within 3° (what
the camera leaves of B before any prior on its look), and B's band contrast over the noise
(standard deviations per pixel). The noise-free true B is indexed too, as a check of the frame.
It is a reference, not a ceiling: a separator that has learnt B's look denoises and can exceed
it (an 8-bit camera with strong gain: adapt 77.1% against the oracle residual's 53.3%).
Vendor-processed maps are refused: their export is not a linear function of the counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TOL_DEG = 3.0
BINS = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5))


def camera_cap(truth_path: str | Path, minority_from: float = 0.25) -> dict:
    """The oracle residual's recovery of B on one truth store (see the module docstring)."""
    import zarr

    from kdeconv.config.detector import DetectorSpec
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.driver import read_truth
    from kdeconv.evaluate.indexing import index_patterns, misorientation_deg
    from kdeconv.evaluate.reference import reference_phases
    from kdeconv.evaluate.simulate_map import camera_effects, expected_recording, recording_unit

    truth = read_truth(truth_path)
    if truth.style != "raw":
        raise SystemExit(f"{truth_path}: style {truth.style!r}; the oracle needs a raw map")
    config = SimulateMapConfig.model_validate(zarr.open_group(str(truth_path), mode="r").attrs["config"])
    r = config.realism
    shape = tuple(truth.A.shape[-2:])
    minority = truth.weights.min(axis=1)
    rows = np.flatnonzero(minority >= min(minority_from, BINS[0][0]))
    a = truth.A[rows].astype(np.float32) / 65535.0   # the clean patterns, [0, 1] as mixed
    b = truth.B[rows].astype(np.float32) / 65535.0
    w = truth.weights[rows]
    gain = camera_effects(config.seed, r, shape)
    unit = recording_unit(r, shape, gain)
    dark = unit * (1.0 - r.signal_fraction)   # the recording of a pattern with no bands
    unit = unit * r.signal_fraction           # per unit of (blurred) pattern
    residual = (truth.C[rows].astype(np.float64) - expected_recording(w[:, :1, None] * a, r, gain)) / unit
    clean_b = (expected_recording(w[:, 1:, None] * b, r, gain) - dark) / unit  # wB·blur(B)
    noise = (residual - clean_b).reshape(len(rows), -1)
    band_to_noise = clean_b.reshape(len(rows), -1).std(axis=1) / np.maximum(noise.std(axis=1), 1e-12)

    detector = DetectorSpec.from_attrs(truth.detector, "the truth store's detector").single().to_kikuchipy()
    phase_objs = [p.phase for p in reference_phases(truth.phases)]

    def recovered(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = index_patterns(stack.astype(np.float32), detector, phase_objs)
        angle = np.full(len(rows), np.nan)
        for k, phase in enumerate(phase_objs):
            mine = truth.phase_b[rows] == k
            angle[mine] = misorientation_deg(res.quaternions[mine], truth.rotation_b[rows][mine],
                                             phase.point_group)
        return (angle <= TOL_DEG) & (res.phase_id == truth.phase_b[rows]), res.cm

    ok_clean, _ = recovered(clean_b)
    ok, cm = recovered(residual)
    m = minority[rows]
    strong = m >= minority_from
    out = {"truth": str(truth_path), "n": int(strong.sum()), "minority_from": minority_from,
           "clean_b": float(ok_clean[strong].mean()), "oracle_b": float(ok[strong].mean()),
           "oracle_cm_median": float(np.median(cm[strong])), "bins": {}}
    for lo, hi in BINS:
        sel = (m >= lo) & ((m < hi) if hi < 0.5 else (m <= hi))
        if sel.any():
            out["bins"][f"{lo:.1f}-{hi:.1f}"] = {"n": int(sel.sum()), "oracle_b": float(ok[sel].mean()),
                                                 "band_to_noise": float(np.median(band_to_noise[sel]))}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("truth", nargs="+", type=Path)
    parser.add_argument("--minority-from", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results = []
    for path in args.truth:
        r = camera_cap(path, args.minority_from)
        results.append(r)
        bins = "; ".join(f"{k}: {100 * v['oracle_b']:.1f}% (band/noise {v['band_to_noise']:.2f}, n {v['n']})"
                         for k, v in r["bins"].items())
        print(f"{path}: B from the oracle residual within {TOL_DEG:g}° on {100 * r['oracle_b']:.1f}% of "
              f"{r['n']} pixels at minority >= {r['minority_from']:g} (noise-free B "
              f"{100 * r['clean_b']:.1f}%; median cm {r['oracle_cm_median']:.2f}); {bins}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
