"""workflows/check_library_maps.py end to end on one tiny processed duplex map."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_library_maps_table(tmp_path, warm_indexer):
    path = REPO / "workflows" / "check_library_maps.py"
    spec = importlib.util.spec_from_file_location("check_library_maps", path)
    workflow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workflow)
    out = tmp_path / "maps"
    code = workflow.main(["--phases", "duplex", "--styles", "processed", "--sizes", "60x80",
                          "--nav", "5", "5", "--grains", "3", "--workers", "1", "--no-baselines",
                          "--out", str(out)])
    assert code == 0
    table = json.loads((out / "table.json").read_text())
    (row,) = table["rows"]
    assert (row["map"], row["style"], row["size"]) == ("duplex", "processed", "60x80")
    assert row["phases"] == ["fe_alpha", "fe_gamma"]
    assert row["background"] == "processed"  # separate's own decision, nothing set by hand
    assert row["ceiling_pure_ok"] is not None and set(row["weight_pred_median"]) >= {"pure", "0.1-0.2"}
    assert row["residual_mixed_both_strong"] is None  # --no-baselines
    assert "| duplex | processed | 60x80 | processed |" in (out / "table.md").read_text()
    assert Path(row["report"]).is_file()
