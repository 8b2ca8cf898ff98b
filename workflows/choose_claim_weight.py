"""Choose a model's boundary claim weight on validation maps: the gate maps' recipes with another seed.

    python workflows/choose_claim_weight.py --checkpoint runs/weight_head/candidate.pt \
        --work runs/claim_weight --out runs/claim_weight/choice.json

Each gate map of ``workflows/check_default_model.py`` (the Ni demo map and the duplex map) is
simulated with ``--seed`` (default 1; the gate maps use 0, so the bar is never fitted on them),
ingested and separated once with the checkpoint, then evaluated with every bar (``evaluate``'s
``claim_weight``; the map's in-grain bar that ``separate`` measured is kept). The chosen bar
maximises the mean mixed-pixel recovery (both grains within 3 degrees) among the bars that keep
pure pixels clean on at least ``--min-pure-ok`` of every map: pure pixels are most of a map.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_default_model import GATE_MAPS, recovery_at_3deg, separated_gate_map  # noqa: E402


def choose(table: dict[float, dict[str, dict]], min_pure_ok: float) -> float | None:
    """The bar with the best mean mixed recovery among those clean on every map (None: none is)."""
    clean = [bar for bar, maps in table.items() if all(s["pure_ok"] >= min_pure_ok for s in maps.values())]
    if not clean:
        return None
    return max(clean, key=lambda bar: (sum(s["mixed_both"] for s in table[bar].values()), bar))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--bars", type=float, nargs="+", default=[0.002, 0.003, 0.005, 0.0075, 0.01])
    ap.add_argument("--seed", type=int, default=1, help="the validation maps' seed (the gate maps use 0)")
    ap.add_argument("--min-pure-ok", type=float, default=0.997)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "claim_weight")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.seed == 0:
        raise SystemExit("Error: seed 0 makes the gate maps themselves; choose the bar on another seed")
    args.work.mkdir(parents=True, exist_ok=True)
    table: dict[float, dict[str, dict]] = {bar: {} for bar in args.bars}
    for name in GATE_MAPS:
        separated, truth = separated_gate_map(args.checkpoint, args.work, name, seed=args.seed)
        for bar in args.bars:
            report = args.work / f"{separated.stem}_report_{bar}"
            scores = recovery_at_3deg(separated, truth, report, f"ceiling: false\nclaim_weight: {bar}\n")
            table[bar][name] = {k: scores[k] for k in ("mixed_both", "mixed_both_0.1_0.2", "pure_ok",
                                                       "pure_invented")}
    chosen = choose(table, args.min_pure_ok)
    for bar, maps in table.items():
        cells = "  ".join(f"{name} {s['mixed_both']:.3f} / {s['mixed_both_0.1_0.2']:.3f} / {s['pure_ok']:.4f}"
                          for name, s in maps.items())
        print(f"claim_weight {bar:<7g} {cells}{'   <- chosen' if bar == chosen else ''}")
    result = {"checkpoint": args.checkpoint, "seed": args.seed, "min_pure_ok": args.min_pure_ok,
              "columns": "mixed_both / mixed_both_0.1_0.2 / pure_ok", "chosen": chosen,
              "table": {str(bar): maps for bar, maps in table.items()}}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if chosen is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
