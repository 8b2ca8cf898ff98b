"""Fixtures of the reliability suite: a shared small map, real Dask processes, a tiny disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from reliability_data import patterns, write_map


@pytest.fixture(scope="session")
def sched(dask_processes):
    """``--scheduler-address ADDR`` of the test run's real scheduler and 2 worker processes."""
    return ["--scheduler-address", dask_processes[0]]


@pytest.fixture(scope="session")
def map_store(tmp_path_factory):
    """A 3x8 map of 32x32 uint16 patterns in chunks of one row."""
    path = tmp_path_factory.mktemp("map") / "map.zarr"
    return write_map(path, patterns((3, 8, 32, 32)), (1, 8))


@pytest.fixture
def tiny_disk(tmp_path):
    """``tiny_disk(size)``: a tmpfs of ``size`` (e.g. "512k") mounted in tmp_path: a disk that fills."""
    mounted = []

    def mount(size: str = "512k", name: str = "disk") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def map_with_blanks(tmp_path):
    """A 4x6 map (rows are chunks) with blank frames: two single ones and a whole blank row."""
    data = patterns((4, 6, 32, 32), seed=4)
    data[0, 2] = 0
    data[1, 5] = 1234  # one value everywhere: blank too
    data[3] = 0        # a whole chunk of dropped frames
    return write_map(tmp_path / "blanks.zarr", data, (1, 6)), data
