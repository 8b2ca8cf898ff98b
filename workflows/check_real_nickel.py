"""Separation of real two-grain mixtures: kikuchipy's real Ni patterns, mixed in raw counts.

    python workflows/check_real_nickel.py [--checkpoint CKPT] \
        [--adapt [--minutes M] [--seed S] [--held-out]] [--processed] \
        [--background auto|raw|processed] [--residual-pass W|off] [--adapt-config FILE] [--out DIR]

``kikuchipy.data.nickel_ebsd_small()`` (real, 3x3, 60x60, 8-bit, PC in the file) holds two grains
33.6 deg apart: patterns 0, 3 and 6, and the other six. One raw pattern of each grain, summed in
raw counts at minority 0.1-0.5, is a mixture with real detector physics and known truth: the
orientations the pure patterns index to. The map written here holds the 9 pure patterns and the
162 mixtures (a line scan), so that separate sees a map with its own static background.

Reported: the share of mixtures where A and B index to the two grains within 3 deg (``both``),
the same where B is also claimed (weight and confidence, the model's claim rule), per minority,
and residual subtraction with the exact Ni master and PC beside them. ``--adapt`` first runs
``kdeconv adapt`` on the map with the 9 pure patterns as references, then separates with that:
the mixtures are then made of the very patterns adapt trained on. ``--held-out`` adapts on 5 of
them (``ADAPT_ON``) and scores only the 27 mixtures of the other 4, new instances of the same
two grains, as a map's boundaries are to its grain interiors. ``--processed`` exports every
pattern, pure and mixed, as vendor software does after recording it (static background from the
map mean, dynamic background, circular mask, 8-bit stretch), so separate and adapt see what an
OIM, AZtec or Esprit export of the same mixtures holds; the truth still comes from the raw ones.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

TOL_DEG = 3.0
# --held-out: adapt on these pure patterns (both grains), score mixtures of the other ones only.
ADAPT_ON = (0, 3, 1, 2, 4)
HELD_OUT = (6, 5, 7, 8)
MINORITIES = (0.1, 0.2, 0.3, 0.4, 0.5)
GRAIN_1 = (0, 3, 6)


def mixtures() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(patterns (171, 60, 60) uint16, minority grain (162,), minority weight (162,), pure index
    pairs (162, 2) as (majority, minority)); the first 9 patterns are the pure ones."""
    import kikuchipy as kp

    raw = kp.data.nickel_ebsd_small().data.reshape(9, 60, 60).astype(np.float64)
    g1 = list(GRAIN_1)
    g2 = [i for i in range(9) if i not in g1]
    out, grain, weight, pairs = [], [], [], []
    for i in g1:
        for j in g2:
            for w in MINORITIES:
                for major, minor, minor_grain in ((i, j, 2), (j, i, 1)):
                    if w == 0.5 and minor_grain == 1:
                        continue  # 50/50 once per pair
                    out.append((1 - w) * raw[major] + w * raw[minor])
                    grain.append(minor_grain)
                    weight.append(w)
                    pairs.append((major, minor))
    # x 16: the uint8 counts' full precision survives the mix
    stack = np.rint(np.concatenate([raw, np.stack(out)]) * 16).astype(np.uint16)
    return stack, np.array(grain), np.array(weight), np.array(pairs)


def processed_look(stack: np.ndarray) -> np.ndarray:
    """The vendor export of recorded patterns (n, sy, sx): static background (the map's mean,
    blurred), then dynamic, circular mask, each stretched to uint8."""
    from kdeconv.config.simulate_map import ProcessedSpec
    from kdeconv.evaluate.simulate_map import vendor_processed
    from kdeconv.preprocess.background import static_background_from_mean

    static_bg = static_background_from_mean(stack.mean(axis=0, dtype=np.float64), "auto")
    return vendor_processed(stack, np.asarray(static_bg, np.float32), ProcessedSpec())


def write_map(path: Path, patterns: np.ndarray) -> Path:
    import zarr

    from kdeconv.io.store import store_attrs

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("map", source={"path": "kikuchipy.data.nickel_ebsd_small mixtures",
                                                  "format": "synthetic mixtures of real patterns"}))
    group.create_array("patterns", data=patterns, chunks=patterns.shape,
                       config={"write_empty_chunks": True})
    return path


def kdeconv(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "kdeconv"), *args], check=True)


def indexer():
    """(index function, detector with the file's mean PC, Ni as a ``RefPhase`` list)."""
    import kikuchipy as kp

    from kdeconv.evaluate.indexing import index_patterns
    from kdeconv.evaluate.reference import reference_phases

    detector = kp.data.nickel_ebsd_small().detector.deepcopy()
    detector.pc = detector.pc_average
    refs = reference_phases([{"name": "ni"}])  # kikuchipy's bundled EMsoft Ni
    return (lambda x: index_patterns(x, detector, refs[0].phase)), detector, refs


def score(checkpoint: str | None, work: Path, label: str, held_out: tuple[int, ...] | None = None,
          separate_options: tuple[str, ...] = (), processed: bool = False) -> dict:
    """The figures of one checkpoint; with ``held_out`` (pure pattern indices), only over the
    mixtures made of those patterns alone."""
    import zarr

    from kdeconv.config.claim import cm_bars
    from kdeconv.evaluate.baselines import background_corrected, residual_baseline
    from kdeconv.evaluate.indexing import misorientation_deg

    patterns, minor_grain, weight, pairs = mixtures()
    map_path = write_map(work / "map.zarr", processed_look(patterns) if processed else patterns)
    sep = work / f"separated_{label}.zarr"
    args = ["separate", str(map_path), "--out", str(sep), "--overwrite", "--workers", "1", *separate_options]
    kdeconv(*(args + (["--checkpoint", checkpoint] if checkpoint else [])))
    group = zarr.open_group(str(sep), mode="r")
    a, b, w = (np.asarray(group[k][...]) for k in ("A", "B", "weights"))
    rule = group.attrs.get("claim_rule") or {"claim_weight": 0.02, "claim_min_cm": 0.3}
    run, detector, refs = indexer()
    pure = run(background_corrected(patterns[:9]))
    truth = {1: pure.quaternions[GRAIN_1[0]], 2: pure.quaternions[1]}
    pg = refs[0].point_group
    spread = misorientation_deg(pure.quaternions, np.repeat(truth[1][None], 9, 0), pg)
    first, second = run(a[9:].astype(np.float32)), run(b[9:].astype(np.float32))
    n = len(weight)

    def near(q, grain):
        angle = misorientation_deg(q, np.repeat(truth[grain][None], n, 0), pg)
        return np.nan_to_num(angle, nan=180) <= TOL_DEG

    major = np.where(minor_grain == 2, 1, 2)
    both = (near(first.quaternions, 1) & near(second.quaternions, 2)) | \
           (near(first.quaternions, 2) & near(second.quaternions, 1))
    minority_found = (near(first.quaternions, 1) * (minor_grain == 1)
                      + near(first.quaternions, 2) * (minor_grain == 2)
                      + near(second.quaternions, 1) * (minor_grain == 1)
                      + near(second.quaternions, 2) * (minor_grain == 2))
    cm_bar, _ = cm_bars(rule["claim_min_cm"], first.cm)  # one phase: the map's own level
    claimed = (w[9:, 1] >= rule["claim_weight"]) & (second.cm >= cm_bar)
    # the baseline sees what separate sees: the vendor's export as it is, or raw corrected here
    c_bc = (processed_look(patterns).astype(np.float32) / 255 if processed
            else background_corrected(patterns))[9:]
    raw_first = run(c_bc)
    residual = residual_baseline(c_bc, detector, refs, raw_first, min_cm=0.4)
    res_both = (near(raw_first.quaternions, 1) & near(residual["second"].quaternions, 2)) | \
               (near(raw_first.quaternions, 2) & near(residual["second"].quaternions, 1))
    res_both &= residual["second_claimed"]
    if held_out is not None:
        keep = np.isin(pairs, held_out).all(axis=1)
        both, claimed, minority_found, res_both, weight, major = (
            x[keep] for x in (both, claimed, minority_found, res_both, weight, major))
        first_q, w = first.quaternions[keep], np.concatenate([w[:9], w[9:][keep]])
        n = int(keep.sum())
    else:
        first_q = first.quaternions
    by_w = {f"{m:.1f}": {"both": float(both[weight == m].mean()),
                         "both_claimed": float((both & claimed)[weight == m].mean()),
                         "residual": float(res_both[weight == m].mean()),
                         "median_predicted_minority": float(np.median(w[9:][weight == m, 1]))}
            for m in MINORITIES}
    return {"model": label, "checkpoint": checkpoint or "shipped", "n": int(n),
            "pure_grain_spread_deg": float(np.nanmax(spread[list(GRAIN_1)])),
            "both": float(both.mean()), "both_claimed": float((both & claimed).mean()),
            "minority_found": float((minority_found > 0).mean()),
            "held_out_patterns": list(held_out) if held_out is not None else None,
            "a_is_majority": float(np.where(major == 1, near(first_q, 1), near(first_q, 2)).mean()),
            "residual_baseline": float(res_both.mean()), "claim_rule": rule, "by_minority": by_w}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--adapt", action="store_true", help="adapt on the 9 pure patterns first")
    parser.add_argument("--minutes", default="3")
    parser.add_argument("--seed", default="0", help="adapt's seed")
    parser.add_argument("--out", type=Path, default=Path("runs/real_nickel"))
    parser.add_argument("--held-out", action="store_true",
                        help=f"adapt on patterns {list(ADAPT_ON)} only and score the mixtures of "
                             f"the others {list(HELD_OUT)}: pattern instances adapt never saw")
    parser.add_argument("--processed", action="store_true",
                        help="export every pattern as vendor software does (background removed, "
                             "masked, 8-bit) before separate and adapt see it")
    parser.add_argument("--background", default=None, choices=("auto", "raw", "processed"),
                        help="separate's and adapt's --background (default: theirs, auto)")
    parser.add_argument("--residual-pass", default=None, help="separate's --residual-pass (W or off)")
    parser.add_argument("--adapt-config", type=Path, default=None,
                        help="adapt's --config (YAML; the options above win)")
    args = parser.parse_args()
    background = ("--background", args.background) if args.background else ()
    options = (("--residual-pass", args.residual_pass) if args.residual_pass else ()) + background
    args.out.mkdir(parents=True, exist_ok=True)
    held_out = HELD_OUT if args.held_out else None
    results = [score(args.checkpoint, args.out, "base", held_out, options, args.processed)]
    if args.adapt:
        patterns, *_ = mixtures()
        if args.processed:
            patterns = processed_look(patterns)
        write_map(args.out / "map.zarr", patterns)
        refs_idx = list(ADAPT_ON) if args.held_out else list(range(9))
        refs = write_map(args.out / "references.zarr", patterns[refs_idx])
        labels = args.out / "labels.txt"
        labels.write_text("\n".join("g1" if i in GRAIN_1 else "g2" for i in refs_idx) + "\n")
        kdeconv("adapt", str(args.out / "map.zarr"), "--out", str(args.out / "adapt"), "--overwrite",
                "--references", str(refs), "--reference-labels", str(labels), "--minutes", args.minutes,
                "--seed", args.seed,
                "--workers", "1", *background,
                *(["--config", str(args.adapt_config)] if args.adapt_config else []),
                *(["--base", args.checkpoint] if args.checkpoint else []))
        results.append(score(str(args.out / "adapt" / "best.pt"), args.out, "adapted", held_out, options,
                             args.processed))
    (args.out / "real_nickel.json").write_text(json.dumps(results, indent=1))
    for r in results:
        print(f"{r['model']}: both grains {r['both']:.2f} (claimed {r['both_claimed']:.2f}), minority found "
              f"{r['minority_found']:.2f}, A = majority {r['a_is_majority']:.2f}; residual subtraction "
              f"{r['residual_baseline']:.2f}; by minority "
              + ", ".join(f"{k}: {v['both']:.2f}/{v['median_predicted_minority']:.2f}"
                          for k, v in r["by_minority"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
