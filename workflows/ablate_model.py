"""Short equal-time training runs that chose the loss and architecture of the shipped model.

    python workflows/ablate_model.py [--minutes 7] [--work runs/ablation] [--only x0 x5]

Every variant trains from scratch for the same wall time on the 120x120 training store of
`workflows/train_default.sh` (runs/default/pairs120.zarr), with the cosine schedule fitted to that
time, then is scored on the fresh 120x120 test set of `check_default_model.py` (median NCC of A
and B in the best ordering, by minority weight). Runs are sequential: on 2 cores, two at once
would only halve each one's budget. Results go to WORK/ablation.json and a table on stdout.

Equal wall time, not equal steps, because the shipped model's budget is wall time: a variant
that is better per step but slower must earn its cost.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflows"))

# Overrides of configs/train_default.yaml. x0 is the session-1 recipe (L1 + gradient loss, conv
# decoders, no attention); each later row adds one change.
BASE_MODEL = {"decoder_block": "conv", "head_channels": 4, "global_levels": []}
BASE_LOSS = {"pattern_grad": 0.5, "pattern_ncc": 0.0}
VARIANTS = {
    "x0": ("session-1 recipe", {}, {}),
    "x1": ("+ 1-NCC loss (1.0)", {}, {"pattern_ncc": 1.0}),
    "x2": ("x1 + attention at 1/16 and bottleneck", {"global_levels": [2, 3]}, {"pattern_ncc": 1.0}),
    "x3": ("x2 + ResBlock decoders, 8 head channels",
           {"global_levels": [2, 3], "decoder_block": "res", "head_channels": 8}, {"pattern_ncc": 1.0}),
    "x4": ("x2 + attention at 1/8 as well", {"global_levels": [1, 2, 3]}, {"pattern_ncc": 1.0}),
    "x5": ("x2 with NCC 2.0, gradient 0.25", {"global_levels": [2, 3]},
           {"pattern_ncc": 2.0, "pattern_grad": 0.25}),
}


def variant_config(name: str) -> dict:
    cfg = yaml.safe_load((ROOT / "configs" / "train_default.yaml").read_text())
    _, model, loss = VARIANTS[name]
    cfg["model"] = {**cfg["model"], **BASE_MODEL, **model}
    cfg["loss"] = {**cfg["loss"], **BASE_LOSS, **loss}
    cfg.update(val_max=160, early_stop_patience=0)
    return cfg


def score(checkpoint: Path, test_store: Path) -> dict:
    from check_default_model import pixel_quality

    from kdeconv.model import load_separator

    return pixel_quality(load_separator(checkpoint, device="cpu"), test_store, None)


def main() -> None:
    from check_default_model import make_test_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--work", default=str(ROOT / "runs" / "ablation"))
    ap.add_argument("--data", default=str(ROOT / "runs" / "default" / "pairs120.zarr"))
    ap.add_argument("--only", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    test_store = make_test_set(ROOT / "runs" / "check", None)
    kdeconv = str(Path(sys.executable).parent / "kdeconv")
    results = {}
    for name in args.only:
        cfg_path = work / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(variant_config(name), sort_keys=False))
        out = work / name
        subprocess.run([kdeconv, "train", "--config", str(cfg_path), "--data", args.data, "--out",
                        str(out), "--max-minutes", str(args.minutes), "--overwrite"], check=True)
        summary = json.loads((out / "summary.json").read_text())
        results[name] = {"change": VARIANTS[name][0], "steps": summary.get("step"),
                         **score(out / "best.pt", test_store)}
        print(name, json.dumps(results[name]), flush=True)
    (work / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| run | change | steps | NCC A | NCC B | NCC B, minority 0.45-0.5 |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['change']} | {r['steps']} | {r['median_ncc_a']:.3f} | "
              f"{r['median_ncc_b']:.3f} | {r['median_ncc_b_minority_0.45_0.5']:.3f} |")


if __name__ == "__main__":
    main()
