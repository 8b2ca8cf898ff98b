"""Small inputs and checks shared by the reliability tests (what kdeconv refuses)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

KIKUCHIPY_DATA = Path(__import__("kikuchipy").__file__).parent / "data"
KDECONV = [sys.executable, "-m", "kdeconv.cli"]


def patterns(shape, dtype=np.uint16, seed=0) -> np.ndarray:
    """Smooth blobs on a gradient with a little noise: pattern-like, never blank, deterministic."""
    rng = np.random.default_rng(seed)
    *nav, sy, sx = shape
    n = int(np.prod(nav))
    y, x = np.mgrid[:sy, :sx]
    centres = rng.random((n, 2)) * [sy, sx]
    img = 0.3 + 0.2 * (y / sy)[None] + np.exp(
        -((y - centres[:, :1, None]) ** 2 + (x - centres[:, 1:, None]) ** 2) / (2 * (sx / 5) ** 2))
    img = img + 0.02 * rng.standard_normal(img.shape)
    img = (img - img.min()) / (img.max() - img.min())
    return np.rint(img * 0.8 * np.iinfo(dtype).max).astype(dtype).reshape(shape)


def write_map(path: Path, data: np.ndarray, nav_chunk: tuple[int, ...]) -> Path:
    """A map store laid out as `kdeconv ingest` writes it (every chunk written)."""
    import zarr

    from kdeconv.io.store import store_attrs

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("map", source={"path": "synthetic", "format": "test"}))
    array = group.create_array("patterns", shape=data.shape, dtype=data.dtype,
                               chunks=tuple(nav_chunk) + data.shape[-2:],
                               config={"write_empty_chunks": True})
    array[...] = data
    return Path(path)


def digest(path: Path) -> str:
    """sha256 over a file, or over every file of a folder (names and bytes): 'untouched' checks."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def refused(result, code: int = 2, *needles: str) -> str:
    """The one ``Error:`` line of a refused CLI run (Click result or CompletedProcess); checks
    the exit code, that there is exactly one such line, no traceback, and the needles."""
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr
    stdout = result.stdout or ""
    assert exit_code == code, (exit_code, stdout, stderr)
    errors = [line for line in (stdout + "\n" + stderr).splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stdout + stderr
    assert "Traceback" not in stdout + stderr, stdout + stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def no_output(*outputs: Path) -> None:
    """Nothing that looks like a finished output, no staging store, no lock file left."""
    for path in outputs:
        path = Path(path)
        assert not path.exists(), path
        assert not path.with_name(path.name + ".partial").exists(), path
        assert not path.with_name(path.name + ".partial.lock").exists(), path


def drop_file_permissions() -> None:
    """``preexec_fn``: the child (and its workers) lose root's right to ignore file permissions."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl")


def can_drop_permissions() -> bool:
    import subprocess

    if os.geteuid() != 0:
        return True  # not root: permissions already apply
    probe = subprocess.run(["true"], preexec_fn=drop_file_permissions, capture_output=True)
    return probe.returncode == 0


def subprocess_env() -> dict:
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, KDECONV_PROGRESS="0", PYTHONPATH=os.pathsep.join([root] + paths))


def resize_disk(folder: Path, size: str) -> None:
    """Grow (or shrink) a tmpfs mounted by the ``tiny_disk`` fixture."""
    import subprocess

    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)
