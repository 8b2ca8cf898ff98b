"""Shared fixtures: the real CLI, a real `dask scheduler` + `dask worker` processes on 127.0.0.1,
and Ctrl-C as a terminal sends it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

os.environ.setdefault("KDECONV_PROGRESS", "0")
# A suite started in the background by a shell without job control inherits SIGINT ignored, and
# so would every command the interrupt tests start: give them the Ctrl-C a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
BIN = Path(sys.executable).parent


@pytest.fixture
def ctrl_c():
    """``ctrl_c(proc, ready, before=None)``: wait until ``ready()`` holds (asserted; 300 s at most)
    for a command started with ``process_group=0``, run ``before()`` while it still runs, then send
    its whole process group SIGINT, as a terminal's Ctrl-C does; returns (stdout, stderr). The
    command is killed if it outlives that, and the test skipped if it finished first."""

    def interrupt(proc, ready, before=None, seconds=300.0):
        try:
            deadline = time.monotonic() + seconds
            while not ready() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ready(), proc.communicate()
            if before is not None and proc.poll() is None:
                before()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode == 0:
            pytest.skip("the run finished before it could be interrupted")
        return stdout, stderr

    return interrupt


@pytest.fixture
def cli():
    """``cli("ingest", a, b)`` runs the real Click CLI in-process; returns the Click Result."""
    from kdeconv.cli import main

    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=True)

    return run


def _dask_exe(name: str) -> list[str]:
    exe = BIN / "dask"
    return [str(exe), name] if exe.exists() else [shutil.which("dask") or "dask", name]


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory):
    """A real scheduler and 2 single-threaded worker processes on 127.0.0.1.

    Yields ``(address, scheduler_file)``. Workers import kdeconv from the same environment.
    """
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask")
    sched_file = tmp / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__LOGGING__DISTRIBUTED="warning")
    procs = [subprocess.Popen(
        _dask_exe("scheduler") + ["--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(sched_file)],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists():
            if time.time() > deadline:
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.2)
        for i in range(2):
            procs.append(subprocess.Popen(
                _dask_exe("worker") + ["--scheduler-file", str(sched_file), "--nthreads", "1",
                                       "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1",
                                       "--memory-limit", "4GB", "--name", f"w{i}"],
                cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(scheduler_file=str(sched_file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
            address = client.scheduler.address
        yield address, sched_file
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
