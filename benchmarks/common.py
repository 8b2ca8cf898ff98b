"""Helpers shared by the benchmark modules and the runner: rows, machine description, peak RSS."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["ROW_KEYS", "make_row", "failed_row", "check_rows", "machine_description", "PeakRSS"]

ROW_KEYS = ("stage", "metric", "value", "baseline", "baseline_value", "ratio", "note")


def make_row(stage: str, metric: str, value: float | None, baseline: str = "",
             baseline_value: float | None = None, note: str = "", higher_is_better: bool = True) -> dict:
    """A result row; ``ratio`` = value / baseline_value (inverted when lower is better, so > 1 is
    always better)."""
    ratio = None
    if value is not None and baseline_value:
        ratio = value / baseline_value if higher_is_better else baseline_value / value if value else None
    return {"stage": stage, "metric": metric, "value": value, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "note": note}


def failed_row(stage: str, error: str) -> dict:
    return {"stage": stage, "metric": "FAILED", "value": None, "baseline": "", "baseline_value": None,
            "ratio": None, "note": " ".join(str(error).split())[:300]}


def check_rows(rows, stage: str) -> list[dict]:
    """Validate what a module's ``run`` returned; raise ValueError saying what is wrong."""
    if not isinstance(rows, list):
        raise ValueError(f"run() returned {type(rows).__name__}, not a list of rows")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is {type(row).__name__}, not a dict")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"row {i} lacks {', '.join(missing)}")
        out.append({**{k: row[k] for k in ROW_KEYS}, **{k: v for k, v in row.items() if k not in ROW_KEYS}})
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_description() -> dict:
    """CPU model, cores, RAM, GPU, OS and the versions that decide the numbers."""
    import psutil

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        pass
    packages = ("kdeconv", "numpy", "scipy", "dask", "distributed", "zarr", "torch", "kikuchipy", "orix",
                "diffsims", "pyebsdindex", "numba")
    return {
        "cpu_model": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": usable,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in packages},
        "git_commit": _git_commit(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


class PeakRSS:
    """``with PeakRSS() as p: ...; p.peak_mb``: peak summed RSS of this process, its children
    (LocalCluster workers, nanny) and ``extra_pids``, sampled every ``interval`` seconds.
    ``p.peak`` / ``p.baseline`` are in bytes (``baseline``: the tree at entry)."""

    def __init__(self, interval: float = 0.05, extra_pids=()):
        self.interval = interval
        self.extra_pids = list(extra_pids)
        self.peak_mb = 0.0
        self.baseline = 0
        self._stop = threading.Event()

    @property
    def peak(self) -> int:
        return int(self.peak_mb * 2**20)

    def _sample(self) -> float:
        import psutil

        me = psutil.Process()
        procs = [me] + me.children(recursive=True)
        for pid in self.extra_pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                pass
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def _loop(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            time.sleep(self.interval)

    def __enter__(self):
        self.baseline = int(self._sample() * 2**20)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._sample())
        return False
