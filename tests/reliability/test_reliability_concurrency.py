"""A second run on the same output is refused (the first keeps its work), Ctrl-C is one line, and
an interrupted or killed run resumes where it stopped: the result equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from reliability_data import KDECONV, digest, no_output, patterns, refused, subprocess_env, write_map

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups and flock as on Linux")


def _wait_for(condition, proc, seconds=180.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _markers(staging: Path, ledger: str = "chunk_done") -> int:
    folder = staging / ledger / "c"
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _hold_lock(output: Path):
    """Another process holding OUT's lock as kdeconv takes it (flock on OUT.partial.lock)."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'%d\\n' % os.getpid())\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(output) + ".partial.lock"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.stdout.close()
    return holder


def test_every_writer_refuses_an_output_another_kdeconv_writes(cli, sched, map_store, tmp_path):
    from kdeconv.io import write_up2

    up2 = write_up2(tmp_path / "m.up2", patterns((2, 3, 16, 16)))
    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump({"n": 8, "source": {"kind": "simulate", "n_pure": 4,
                                                         "shape": [32, 32]}}))
    runs = {
        "ingest": ["ingest", up2, tmp_path / "o.zarr"],
        "export": ["export", map_store, tmp_path / "o.tif"],
        "separate": ["separate", map_store, "--out", tmp_path / "o.zarr"],
        "generate": ["generate", "--config", config, "--out", tmp_path / "o.zarr"],
        "adapt": ["adapt", map_store, "--out", tmp_path / "run"],
    }
    for name, args in runs.items():
        output = Path(args[2] if name in ("ingest", "export") else args[-1])
        holder = _hold_lock(output)
        try:
            refused(cli(*args, *sched), 2, f"{output} is being written by another kdeconv",
                    f"pid {holder.pid}")
            assert not output.exists() and not output.with_name(output.name + ".partial").exists()
        finally:
            holder.kill()
            holder.wait()
    # A lock file left by a killed process holds no lock: the next run goes ahead.
    done = cli("ingest", up2, tmp_path / "o.zarr", *sched)
    assert done.exit_code == 0, done.output + done.stderr
    no_output(tmp_path / "never.zarr")
    assert not (tmp_path / "o.zarr.partial.lock").exists()


def test_second_separate_is_refused_ctrl_c_is_one_line_and_the_rerun_resumes(cli, sched, tmp_path, ctrl_c):
    map_path = write_map(tmp_path / "map.zarr", patterns((8, 12, 48, 48), seed=2), (1, 12))
    before = digest(map_path)
    out = tmp_path / "sep.zarr"
    staging = tmp_path / "sep.zarr.partial"
    proc = subprocess.Popen(KDECONV + ["separate", str(map_path), "--out", str(out), "--workers", "1",
                                       "--batch-size", "8"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, process_group=0)

    def second_run_refused():
        # Case 11: the second run is refused and leaves the first one's staging store alone.
        refused(cli("separate", map_path, "--out", out, *sched), 2, "being written by another",
                f"pid {proc.pid}")
        assert staging.is_dir() and proc.poll() is None

    # Case 13: Ctrl-C in a terminal reaches the whole process group, workers included.
    stdout, stderr = ctrl_c(proc, lambda: _markers(staging) >= 1, before=second_run_refused)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["Interrupted: rerun the same command to resume where possible."]
    assert "Traceback" not in stdout + stderr
    assert not out.exists() and staging.is_dir() and not Path(str(staging) + ".lock").exists()
    done_before = _markers(staging)

    # (byte-identity of a resumed store: tests/separate/test_separate_interrupt.py)
    rerun = cli("separate", map_path, "--out", out, "--batch-size", "8", *sched)
    assert rerun.exit_code == 0, rerun.output + rerun.stderr
    assert f"resumed: {done_before} of 8 chunks were already done" in rerun.output
    assert np.isfinite(zarr.open_group(str(out))["weights"][...]).all()
    no_output(tmp_path / "never.zarr")
    assert digest(map_path) == before


def test_generate_killed_at_the_pair_stage_resumes_its_finished_chunks(cli, sched, tmp_path):
    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 5, "n": 400, "chunk_size": 20,
        "source": {"kind": "simulate", "n_pure": 16, "shape": [48, 48]},
        "augment": {"realism": True}}))
    out = tmp_path / "pairs.zarr"
    staging = tmp_path / "pairs.zarr.partial"
    proc = subprocess.Popen(KDECONV + ["generate", "--config", str(config), "--out", str(out),
                                       "--workers", "1"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, process_group=0)
    try:
        assert _wait_for(lambda: _markers(staging) >= 2, proc), proc.communicate()
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run dies at once: no cleanup at all
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if (out / "C").exists():
        pytest.skip("the run finished before it could be killed")
    done_chunks = _markers(staging)
    assert 2 <= done_chunks < 20 and _markers(staging, "pure_done") == 1

    rerun = cli("generate", "--config", config, "--out", out, *sched)
    assert rerun.exit_code == 0, rerun.output + rerun.stderr
    assert f"{done_chunks * 20} pairs already written" in rerun.output
    assert f"generate: {400 - done_chunks * 20} pairs" in rerun.output
    reference = tmp_path / "ref.zarr"
    assert cli("generate", "--config", config, "--out", reference, *sched).exit_code == 0
    got, want = zarr.open_group(str(out)), zarr.open_group(str(reference))
    for name in ("C", "A", "B", "weights", "index_a", "index_b", "rotation_a", "masked", "augment"):
        np.testing.assert_array_equal(got[name][...], want[name][...], err_msg=name)
    no_output(tmp_path / "never.zarr")
