"""benchmarks/gpu_check.sh runs end to end on the CPU (its dry run), with nothing of the indexing
stack importable: what the device check needs is what fetch_gpu_wheels.sh brings."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    env = dict(os.environ, GPU_CHECK_DEVICE="cpu", GPU_CHECK_N="80", GPU_CHECK_SIZE="64",
               GPU_CHECK_ADAPT="0", GPU_CHECK_WORK=str(tmp_path / "work"), OUT=str(tmp_path / "out"),
               GPU_CHECK_BLOCK_IMPORTS="kikuchipy,orix,diffsims,pyebsdindex,dask_cuda",
               PYTHON=sys.executable, PYTHONPATH=str(REPO))
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    failed = {k: v.get("error") for k, v in result["steps"].items() if not v.get("ok")}
    assert proc.returncode == 0 and result["ok"], (failed, proc.stdout[-2000:], proc.stderr[-2000:])
    steps = result["steps"]
    assert list(steps) == ["environment", "map", "separate", "compare_cpu", "bare_forward",
                           "pipeline_alone", "train"]
    assert steps["separate"]["patterns"] == 80 and steps["separate"]["patterns_per_s"] > 0
    assert steps["separate"]["separation_pass_patterns_per_s"] > 0
    assert steps["pipeline_alone"]["patterns"] == 80
    assert steps["pipeline_alone"]["default"]["writers_writing"] >= 0
    assert {"more_threads", "fewer_threads", "no_writes"} <= set(steps["pipeline_alone"])
    launch = steps["pipeline_alone"]["launch"]
    assert launch["device_done_s"] >= launch["launch_returned_s"] > 0 and launch["host_syncs"] == 0
    assert steps["compare_cpu"]["device_fp32_A_max_lsb"] <= 1
    assert steps["bare_forward"]["bare_forward_patterns_per_s"] > 0
    assert steps["train"]["loss_falls"] and steps["train"]["checkpoint_roundtrip"]
    assert result["blocked_imports"] == ["kikuchipy", "orix", "diffsims", "pyebsdindex", "dask_cuda"]
    assert "separate: 80 patterns 64x64" in (tmp_path / "out" / "gpu_check.log").read_text()
