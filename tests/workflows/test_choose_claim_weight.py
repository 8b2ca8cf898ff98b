"""workflows/choose_claim_weight.py: the bar with the best mixed recovery among those that keep pure
pixels clean on every validation map, and never the gate maps' own seed."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflows"))
import choose_claim_weight  # noqa: E402


def scores(mixed, pure):
    return {"mixed_both": mixed, "mixed_both_0.1_0.2": mixed, "pure_ok": pure, "pure_invented": 1 - pure}


def test_the_best_clean_bar_is_chosen():
    table = {0.003: {"demo_map": scores(0.99, 0.990), "duplex_map": scores(0.97, 0.999)},   # invents
             0.005: {"demo_map": scores(0.98, 0.999), "duplex_map": scores(0.96, 0.998)},
             0.01: {"demo_map": scores(0.97, 1.000), "duplex_map": scores(0.96, 0.999)}}
    assert choose_claim_weight.choose(table, min_pure_ok=0.997) == 0.005
    # equal recovery: the higher bar, which claims less
    table[0.01]["demo_map"] = scores(0.98, 1.0)
    assert choose_claim_weight.choose(table, min_pure_ok=0.997) == 0.01
    assert choose_claim_weight.choose(table, min_pure_ok=1.0) is None


def test_the_gate_seed_is_refused():
    with pytest.raises(SystemExit, match="seed 0 makes the gate maps"):
        choose_claim_weight.main(["--checkpoint", "x.pt", "--seed", "0"])
