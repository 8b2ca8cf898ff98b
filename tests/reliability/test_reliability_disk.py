"""A full disk, a read-only file system or a folder without write permission is one line (exit 1),
with no traceback; resumable commands keep their staging store, other outputs are removed."""

from __future__ import annotations

import errno
import subprocess

import numpy as np
import pytest
import yaml
import zarr
from reliability_data import (
    KDECONV,
    can_drop_permissions,
    digest,
    drop_file_permissions,
    no_output,
    refused,
    resize_disk,
    subprocess_env,
    write_map,
)

from kdeconv.errors import EnvironmentFault, environment_fault


@pytest.fixture(scope="module")
def noisy_map(tmp_path_factory):
    """5x8 patterns of 128x128 uint16 noise (1.3 MB that does not compress)."""
    data = np.random.default_rng(7).integers(0, 65535, (5, 8, 128, 128), dtype=np.uint16)
    return write_map(tmp_path_factory.mktemp("noisy") / "noisy.zarr", data, (1, 8))


def test_ingest_on_a_full_disk(cli, sched, noisy_map, tiny_disk, tmp_path):
    from kdeconv.io import write_up2

    up2 = write_up2(tmp_path / "noisy.up2", zarr.open_group(str(noisy_map))["patterns"][...])
    before = digest(up2)
    disk = tiny_disk("512k")
    out = disk / "m.zarr"
    refused(cli("ingest", up2, out, "--chunk-mb", "0.25", *sched), 1, f"no space left on {disk}",
            "needs about 1 MB")
    no_output(out)
    assert digest(up2) == before


@pytest.mark.parametrize("suffix", [".up2", ".tif", ".h5"])
def test_export_that_cannot_fit_is_refused_before_writing(cli, sched, noisy_map, tiny_disk, suffix):
    disk = tiny_disk("512k")
    out = disk / f"o{suffix}"
    refused(cli("export", noisy_map, out, *sched), 1, f"no space left on {disk}", f"writing o{suffix}")
    no_output(out)


@pytest.mark.parametrize("suffix", [".tif", ".h5", ".up2"])
def test_export_that_fills_the_disk_midway_removes_its_partial_file(cli, sched, noisy_map, tiny_disk,
                                                                    monkeypatch, suffix):
    # Another program fills the disk meanwhile: the check before writing passes, the write fails
    # (h5 without crashing the process; UP2 when its blocks are reserved, before any worker writes).
    import kdeconv.io.export as export

    monkeypatch.setattr(export, "check_free_space", lambda *args, **kwargs: None)
    disk = tiny_disk("512k")
    out = disk / f"o{suffix}"
    refused(cli("export", noisy_map, out, *sched), 1, f"no space left on {disk}")
    no_output(out)
    assert list(disk.iterdir()) == []


def test_separate_on_a_full_disk_keeps_its_work_and_resumes(cli, sched, map_store, tiny_disk):
    disk = tiny_disk("64k")
    out = disk / "sep.zarr"
    refused(cli("separate", map_store, "--out", out, *sched), 1, f"no space left on {disk}")
    assert not out.exists() and (disk / "sep.zarr.partial").is_dir()
    resize_disk(disk, "16m")
    rerun = cli("separate", map_store, "--out", out, *sched)
    assert rerun.exit_code == 0, rerun.output + rerun.stderr
    assert np.isfinite(zarr.open_group(str(out))["weights"][...]).all()


def test_generate_on_a_full_disk_keeps_its_work_and_resumes(cli, sched, tiny_disk, tmp_path):
    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump({"seed": 3, "n": 120, "chunk_size": 20, "source": {
        "kind": "simulate", "n_pure": 8, "shape": [48, 48]}}))
    disk = tiny_disk("256k")
    out = disk / "pairs.zarr"
    refused(cli("generate", "--config", config, "--out", out, *sched), 1, f"no space left on {disk}")
    assert not out.exists() and (disk / "pairs.zarr.partial").is_dir()
    resize_disk(disk, "16m")
    rerun = cli("generate", "--config", config, "--out", out, *sched)
    assert rerun.exit_code == 0, rerun.output + rerun.stderr
    assert "resuming" in rerun.output and zarr.open_group(str(out))["C"].shape == (120, 48, 48)


def test_read_only_file_system(cli, map_store, tiny_disk):
    disk = tiny_disk("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    out = disk / "o.tif"
    refused(cli("export", map_store, out), 1, "read-only file system", str(disk))
    no_output(out)


@pytest.mark.skipif(not can_drop_permissions(), reason="cannot drop file permissions here")
def test_folder_without_write_permission(map_store, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    out = folder / "o.tif"
    done = subprocess.run(KDECONV + ["export", str(map_store), str(out)], capture_output=True, text=True,
                          env=subprocess_env(), preexec_fn=drop_file_permissions, timeout=120)
    refused(done, 1, "permission denied", str(folder))
    no_output(out)


def test_faults_of_the_machine_are_found_inside_other_errors(tmp_path):
    # As they reach the client from a Dask task or a library: wrapped, or with the errno in words.
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))
        except OSError as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        fault = environment_fault(outer, output=tmp_path / "out.zarr", needed_bytes=50 * 2**20)
    assert isinstance(fault, EnvironmentFault)
    assert str(fault).startswith("no space left on ") and "needs about 50 MB" in str(fault)
    h5 = RuntimeError("Can't close dataset (file write failed: errno = 28, error message = "
                      "'No space left on device')")
    assert str(environment_fault(h5, output=tmp_path / "o.h5")).startswith("no space left on")
    assert "read-only" in str(environment_fault(OSError(errno.EROFS, "Read-only file system", "/x")))
    assert environment_fault(ValueError("a bug")) is None
