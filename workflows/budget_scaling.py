"""Check-set quality against training minutes, and what the trend says about reaching a target.

    python workflows/budget_scaling.py runs/v4/budget_*/check.json [--shipped] [--target 0.9]

Each check.json comes from workflows/budget_scaling.sh (its folder name gives the budget, the
run's summary.json the steps); --shipped adds the shipped model's check (default.json). Two fits
per metric, by least squares over the runs: NCC linear in log(budget), and the error 1 - NCC as a
power of the budget (a straight line on log-log axes, the usual shape of training curves). Each
is solved for the budget at which the median NCC reaches the target, in minutes (what the
workflow's budget caps) and in steps (which factor out how busy the machine was).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def budget_to_target(budget: np.ndarray, ncc: np.ndarray, target: float) -> dict:
    """The budget (minutes or steps) at which each fit reaches ``target``, and the gain per doubling."""
    t = np.log(budget)
    slope, icpt = np.polyfit(t, ncc, 1)
    lin = float(np.exp((target - icpt) / slope)) if slope > 0 else float("inf")
    pslope, picpt = np.polyfit(t, np.log(1 - ncc), 1)
    power = float(np.exp((np.log(1 - target) - picpt) / pslope)) if pslope < 0 else float("inf")
    return {"gain_per_doubling": float(slope * np.log(2)), "log_linear": lin,
            "power_law": power}


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
        summary = path.parent / "summary.json"
        steps = json.loads(summary.read_text())["step"] if summary.exists() else float("nan")
        rows.append((float(m.group(1)), steps, q["median_ncc_a"], q["median_ncc_b"], path.parent.name))
    if args.shipped:
        info = json.loads((ROOT / "kdeconv" / "model" / "weights" / "default.json").read_text())
        minutes = float(re.search(r"--max-minutes ([0-9.]+)", info["command"]).group(1))
        q = info["test_quality"]
        rows.append((minutes, info["training"]["step"], q["median_ncc_a"], q["median_ncc_b"], "shipped"))
    rows.sort()
    print(f"{'minutes':>8} {'steps':>6} {'NCC A':>7} {'NCC B':>7}  run")
    for m, steps, a, b, name in rows:
        print(f"{m:8.1f} {steps:6} {a:7.4f} {b:7.4f}  {name}")
    if len({r[0] for r in rows}) < 2:
        return
    # Minutes are what the budget caps; steps factor out how busy the machine was in each run.
    for x_col, unit in ((0, "min"), (1, "steps")):
        x = np.array([r[x_col] for r in rows], float)
        for col, label in ((2, "A"), (3, "B")):
            fit = budget_to_target(x, np.array([r[col] for r in rows]), args.target)
            print(f"NCC {label}: +{fit['gain_per_doubling']:.4f} per doubling of {unit}; median "
                  f"{args.target} at ~{fit['log_linear']:.0f} {unit} (log-linear), "
                  f"~{fit['power_law']:.0f} {unit} (power law on 1 - NCC)")


if __name__ == "__main__":
    main()
