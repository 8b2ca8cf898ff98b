"""Store layout shared by every stage (DESIGN.md, "Stores").

Outputs are written to ``NAME.partial`` next to the target and renamed into place when complete,
so an interrupted or failed command never leaves a store that looks finished. Commands that can
resume (separate, generate) keep the ``.partial`` store and pick it up on the next run.
"""

from __future__ import annotations

import datetime as _dt
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.errors import InputError

__all__ = [
    "DEFAULT_CHUNK_MB", "nav_chunks", "partial_path", "prepare_output", "finalize_output",
    "store_attrs", "open_store", "jsonable",
]

DEFAULT_CHUNK_MB = 32.0


def nav_chunks(nav_shape: tuple[int, ...], sig_shape: tuple[int, ...], itemsize: int,
               chunk_mb: float = DEFAULT_CHUNK_MB) -> tuple[int, ...]:
    """Chunk shape over navigation axes only, each pattern whole, about ``chunk_mb`` per chunk.

    2D maps are chunked in whole rows when a row fits, otherwise in pieces of one row.
    """
    if chunk_mb <= 0:
        raise InputError(f"--chunk-mb must be positive, got {chunk_mb}")
    pattern_bytes = int(np.prod(sig_shape)) * itemsize
    per_chunk = max(1, int(chunk_mb * 2**20) // max(1, pattern_bytes))
    if len(nav_shape) == 1:
        return (min(nav_shape[0], per_chunk),) + tuple(sig_shape)
    if len(nav_shape) != 2:
        raise InputError(f"navigation must be 1D or 2D, got shape {nav_shape}")
    ny, nx = nav_shape
    if per_chunk >= nx:
        return (min(ny, per_chunk // nx), nx) + tuple(sig_shape)
    # Split a long row evenly instead of leaving a sliver at its end.
    pieces = math.ceil(nx / per_chunk)
    return (1, math.ceil(nx / pieces)) + tuple(sig_shape)


def partial_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


def prepare_output(path: str | Path, overwrite: bool, *, resume: bool = False) -> Path:
    """Check the target and return the staging path to write into.

    With ``resume`` an existing ``.partial`` is kept so the command can skip finished work.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"output already exists: {path} (use --overwrite to replace it)")
    if not path.parent.exists():
        raise InputError(f"output folder does not exist: {path.parent}")
    staging = partial_path(path)
    if staging.exists() and (overwrite or not resume):
        shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
    return staging


def finalize_output(staging: Path, path: str | Path) -> Path:
    """Move a complete staging store into place (replacing an old one only now, when safe)."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    staging.rename(path)
    return path


def jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays, paths and tuples into plain JSON for Zarr attrs."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    return value


def store_attrs(kind: str, config: Any = None, source: dict | None = None,
                **extra: Any) -> dict[str, Any]:
    """The attrs every store carries: kind, version, command line, config, source."""
    from kdeconv import __version__

    attrs = {
        "kdeconv_kind": kind,
        "kdeconv_version": __version__,
        "command": " ".join(["kdeconv"] + sys.argv[1:]) if Path(sys.argv[0]).name == "kdeconv"
        else " ".join(sys.argv),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": jsonable(config) if config is not None else {},
        "source": jsonable(source or {}),
    }
    attrs.update(jsonable(extra))
    return attrs


def open_store(path: str | Path, kind: str | None = None,
               arrays: tuple[str, ...] = ()) -> "zarr.Group":  # noqa: F821
    """Open a finished kdeconv store read-only, or raise ``InputError`` saying what is wrong."""
    import zarr

    path = Path(path)
    if not path.exists():
        if partial_path(path).exists():
            raise InputError(f"store {path} is incomplete ({partial_path(path).name} exists): "
                             "rerun the command that makes it")
        raise InputError(f"store not found: {path}")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for "not a group"
        raise InputError(f"not a Zarr store: {path} ({type(err).__name__})") from None
    found = group.attrs.get("kdeconv_kind")
    if kind is not None and found != kind:
        what = f"a kdeconv '{found}' store" if found else "not a kdeconv store"
        raise InputError(f"{path} is {what}; expected a '{kind}' store")
    for name in arrays:
        if name not in group:
            raise InputError(f"store {path} has no array '{name}' (has: {', '.join(sorted(group.array_keys()))})")
    return group
