"""The `python -m benchmarks` runner: failing modules become rows, the table and results file are written."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.__main__ import _device_checks, format_table, merge_results, run_module  # noqa: E402
from benchmarks.common import check_rows, machine_description, make_row  # noqa: E402


def test_rows_ratio_and_validation():
    row = make_row("ingest", "patterns/s", 1234.0, "numpy.fromfile", 2000.0)
    assert row["ratio"] == pytest.approx(0.617)
    lower = make_row("separate", "peak RSS MB", 500.0, "10x map", 1000.0, higher_is_better=False)
    assert lower["ratio"] == 2.0
    assert check_rows([row], "ingest") == [row]
    with pytest.raises(ValueError, match="lacks"):
        check_rows([{"stage": "x"}], "x")
    with pytest.raises(ValueError, match="not a list"):
        check_rows(None, "x")
    table = format_table([row])
    assert "patterns/s" in table and "0.617" in table


def test_failing_module_is_a_failed_row_not_a_crash():
    rows, info = run_module("bench_does_not_exist", quick=True, timeout=120)
    assert not info["ok"] and "ModuleNotFoundError" in info["error"]
    assert rows[0]["metric"] == "FAILED" and rows[0]["stage"] == "does_not_exist"


def test_machine_description_and_cli(tmp_path):
    m = machine_description()
    assert m["cores_usable"] >= 1 and m["ram_gb"] > 0 and m["versions"]["numpy"]
    out = tmp_path / "results.json"
    bad = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "no benchmark module bench_nope" in bad.stderr and not out.exists()


def test_only_merges_into_existing_results():
    def row(module, metric, value):
        return {**make_row(module.removeprefix("bench_"), metric, value, "base", 1.0), "module": module}
    old = {"started": "t0", "quick": False, "seconds": 30.0,
           "modules": {"bench_a": {"ok": True, "seconds": 10.0}, "bench_b": {"ok": True, "seconds": 20.0}},
           "rows": [row("bench_a", "x", 1.0), row("bench_b", "y", 2.0), row("bench_b", "z", 3.0)]}
    new = {"started": "t1", "quick": False, "seconds": 5.0,
           "modules": {"bench_b": {"ok": True, "seconds": 5.0}}, "rows": [row("bench_b", "y", 9.0)]}
    merged = merge_results(old, new)
    assert [(r["module"], r["metric"], r["value"]) for r in merged["rows"]] == [
        ("bench_a", "x", 1.0), ("bench_b", "y", 9.0)]
    assert merged["modules"]["bench_a"]["seconds"] == 10.0 and merged["seconds"] == 15.0


def test_a_cpu_run_keeps_the_device_checks_record(tmp_path):
    out = tmp_path / "results.json"
    assert _device_checks(out) == {}  # no file yet
    out.write_text('{"rows": [], "gpu_check": {"card": "NVIDIA H200", "summary": {"x": 1}}}')
    assert _device_checks(out) == {"gpu_check": {"card": "NVIDIA H200", "summary": {"x": 1}}}
    out.write_text("not json")
    assert _device_checks(out) == {}
