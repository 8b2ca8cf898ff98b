"""Check-set quality against training minutes, and what the trend says about reaching a target.

    python workflows/budget_scaling.py runs/v4/budget_*/check.json [--shipped] [--target 0.9]

Each check.json comes from workflows/budget_scaling.sh (its folder name gives the budget);
--shipped adds the shipped model's check (kdeconv/model/weights/default.json, its own budget).
Two fits per metric, both by least squares over the budgets: NCC linear in log(minutes), and
the error 1 - NCC as a power of minutes (a straight line on log-log axes, the usual shape of
training curves). Each is solved for the minutes at which the median NCC reaches the target.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def minutes_to_target(minutes: np.ndarray, ncc: np.ndarray, target: float) -> dict:
    t = np.log(minutes)
    slope, icpt = np.polyfit(t, ncc, 1)
    lin = float(np.exp((target - icpt) / slope)) if slope > 0 else float("inf")
    pslope, picpt = np.polyfit(t, np.log(1 - ncc), 1)
    power = float(np.exp((np.log(1 - target) - picpt) / pslope)) if pslope < 0 else float("inf")
    return {"gain_per_doubling": float(slope * np.log(2)), "minutes_log_linear": lin,
            "minutes_power_law": power}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checks", nargs="+", type=Path)
    ap.add_argument("--shipped", action="store_true", help="add the shipped model's check")
    ap.add_argument("--target", type=float, default=0.9)
    args = ap.parse_args()
    rows = []
    for path in args.checks:
        m = re.search(r"budget_([0-9.]+)", str(path))
        q = json.loads(path.read_text())
        rows.append((float(m.group(1)), q["median_ncc_a"], q["median_ncc_b"], path.parent.name))
    if args.shipped:
        info = json.loads((ROOT / "kdeconv" / "model" / "weights" / "default.json").read_text())
        minutes = float(re.search(r"--max-minutes ([0-9.]+)", info["command"]).group(1))
        q = info["test_quality"]
        rows.append((minutes, q["median_ncc_a"], q["median_ncc_b"], "shipped"))
    rows.sort()
    print(f"{'minutes':>8} {'NCC A':>7} {'NCC B':>7}  run")
    for m, a, b, name in rows:
        print(f"{m:8.1f} {a:7.4f} {b:7.4f}  {name}")
    if len({r[0] for r in rows}) < 2:
        return
    minutes = np.array([r[0] for r in rows])
    for col, label in ((1, "A"), (2, "B")):
        fit = minutes_to_target(minutes, np.array([r[col] for r in rows]), args.target)
        print(f"NCC {label}: +{fit['gain_per_doubling']:.4f} per doubling of training time; "
              f"median {args.target} at ~{fit['minutes_log_linear']:.0f} min (log-linear), "
              f"~{fit['minutes_power_law']:.0f} min (power law on 1 - NCC)")


if __name__ == "__main__":
    main()
