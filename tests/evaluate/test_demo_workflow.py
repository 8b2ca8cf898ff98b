"""workflows/demo.sh end to end on a tiny map, through a real shell and the installed CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_workflow_tiny_map(tmp_path, warm_indexer):
    out = tmp_path / "demo"
    env = dict(os.environ, KDECONV_DEMO_OUT=str(out), KDECONV_DEMO_NAV="6 6", KDECONV_DEMO_WORKERS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    run = subprocess.run(["bash", str(REPO / "workflows" / "demo.sh")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"Report: {out / 'report' / 'report.md'}" in run.stdout

    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["nav_shape"] == [6, 6] and metrics["n_patterns"] == 36
    assert set(metrics["recovery"]) == {"kdeconv", "raw", "residual", "truth"}
    report = (out / "report" / "report.md").read_text()
    for png in metrics["images"]:
        assert (out / "report" / png).is_file() and png in report

    import kikuchipy as kp
    import zarr

    separated = zarr.open_group(str(out / "separated.zarr"), mode="r")
    for name in ("A", "B"):
        s = kp.load(out / f"{name}.up2")
        assert np.array_equal(s.data, separated[name][...])

