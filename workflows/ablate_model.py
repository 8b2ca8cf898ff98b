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
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflows"))

# Overrides of configs/train_default.yaml. x0 is the ni-v1 recipe (L1 + gradient loss, conv
# decoders, no attention); each later x row adds one change (all fp32), which chose ni-v2. The y
# rows start from the ni-v2 recipe (x3's model with x5's loss) and vary precision and size, which
# chose ni-v3 and ni-v4 (docs/model_card.md).
BASE_MODEL = {"decoder_block": "conv", "head_channels": 4, "global_levels": []}
BASE_LOSS = {"pattern_grad": 0.5, "pattern_ncc": 0.0}
SHIPPED_V2_MODEL = {"global_levels": [2, 3], "decoder_block": "res", "head_channels": 8}
SHIPPED_V2_LOSS = {"pattern_ncc": 2.0, "pattern_grad": 0.25}
FP32 = {"precision": "fp32"}
BF16 = {"precision": "bf16"}
WIDER = {**SHIPPED_V2_MODEL, "widths": [32, 64, 96, 128]}
VARIANTS = {  # name: (change, model, loss, other top-level keys)
    "x0": ("ni-v1 recipe", {}, {}, FP32),
    "x1": ("+ 1-NCC loss (1.0)", {}, {"pattern_ncc": 1.0}, FP32),
    "x2": ("x1 + attention at 1/16 and bottleneck", {"global_levels": [2, 3]}, {"pattern_ncc": 1.0},
           FP32),
    "x3": ("x2 + ResBlock decoders, 8 head channels", SHIPPED_V2_MODEL, {"pattern_ncc": 1.0}, FP32),
    "x4": ("x2 + attention at 1/8 as well", {"global_levels": [1, 2, 3]}, {"pattern_ncc": 1.0}, FP32),
    "x5": ("x2 with NCC 2.0, gradient 0.25", {"global_levels": [2, 3]}, SHIPPED_V2_LOSS, FP32),
    "y0": ("shipped v2 recipe (x3 model, x5 loss), fp32", SHIPPED_V2_MODEL, SHIPPED_V2_LOSS, FP32),
    "y1": ("y0 in bf16 autocast", SHIPPED_V2_MODEL, SHIPPED_V2_LOSS, BF16),
    "y2": ("y1, widths 32-64-96-128", WIDER, SHIPPED_V2_LOSS, BF16),
    "y3": ("y2, batch 32", WIDER, SHIPPED_V2_LOSS, {**BF16, "batch_size": 32}),
    "y4": ("y1 with a 2x stem: levels at 1/2 to 1/32, widths 16-24-48-64-96",
           {**SHIPPED_V2_MODEL, "stem_factor": 2, "widths": [16, 24, 48, 64, 96], "global_levels": [3, 4]},
           SHIPPED_V2_LOSS, BF16),
    "y5": ("y1 with 4 channels to full resolution and 2 refine layers",
           {**SHIPPED_V2_MODEL, "full_res_channels": 4, "refine_layers": 2}, SHIPPED_V2_LOSS, BF16),
    "y6": ("y1, widths 48-96-128-192", {**SHIPPED_V2_MODEL, "widths": [48, 96, 128, 192]},
           SHIPPED_V2_LOSS, BF16),
}


# What configs/train_default.yaml held when the x and y rows were run (the ni-v2 recipe), for the keys
# that later changed, so that every row still means what its table says.
NI_V2_MODEL = {"widths": [24, 48, 64, 96], "full_res_channels": 1, "refine_layers": 1}
NI_V2_TRAIN = {"batch_size": 16, "steps_per_epoch": 250}


def variant_config(name: str) -> dict:
    cfg = yaml.safe_load((ROOT / "configs" / "train_default.yaml").read_text())
    _, model, loss, other = VARIANTS[name]
    cfg["model"] = {**cfg["model"], **NI_V2_MODEL, **BASE_MODEL, **model}
    cfg["loss"] = {**cfg["loss"], **BASE_LOSS, **loss}
    cfg.update({**NI_V2_TRAIN, "val_max": 160, "early_stop_patience": 0, **other})
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
    ap.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
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
