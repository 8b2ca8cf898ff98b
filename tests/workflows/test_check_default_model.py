"""workflows/check_default_model.py: --install refuses a model that failed the demo-map gate."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflows"))
import check_default_model  # noqa: E402


@pytest.mark.parametrize("demo_map", [None, {"pure_ok": 0.77, "mixed_both": 0.99, "gate_passed": False}])
def test_install_refuses_a_failed_or_missing_gate(tmp_path, monkeypatch, demo_map):
    import kdeconv.model

    target = tmp_path / "weights" / "default.pt"
    monkeypatch.setattr(kdeconv.model, "DEFAULT_CHECKPOINT", target)
    check_json = tmp_path / "check.json"
    check_json.write_text(json.dumps({"median_ncc_a": 0.9} | ({"demo_map": demo_map} if demo_map else {})))
    with pytest.raises(SystemExit, match="demo-map gate"):
        check_default_model.install(tmp_path / "best.pt", check_json, None)
    assert not target.exists()
