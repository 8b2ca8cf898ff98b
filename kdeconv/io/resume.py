"""The resume protocol of the commands that pick up an interrupted run (``separate``, ``generate``).

1. ``prepare_output(OUT, overwrite, resume=True)`` locks OUT and keeps an existing ``OUT.partial``.
2. ``reopen(staging, key)`` returns that staging store when it was made by the same command
   (its ``resume_key`` attr equals ``key``); any other leftover is removed and the run starts over.
3. A new staging store gets a ledger (``add_ledger``): one uint8 done-marker per unit of work
   (a chunk), all 0.
4. Each task writes its chunk's data, then ``mark_done``: a marker always means a whole chunk,
   and a chunk that died half-written has none and is redone.
5. ``pending`` lists the chunks still to do; when none is left, ``finish`` renames the staging
   store into place (and releases the lock).

Work is deterministic per chunk, so a resumed store is byte-identical to an uninterrupted one.

A run folder (``adapt``) keeps its finished stages in place instead: ``start_run`` writes the
settings' key into it, each stage writes its result atomically, and ``run_key`` lets a rerun with
the same key skip what is there. The file the user runs with is written last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.files import atomic_file
from kdeconv.io.store import finalize_output, open_for_writing, prepare_output

__all__ = ["LEDGER", "RESUME_KEY", "RUN_KEY_FILE", "begin", "reopen", "create", "add_ledger",
           "resize_ledger", "mark_done", "pending", "done_count", "require_complete", "finish",
           "start_run", "run_key", "same_key", "write_file_atomic"]

LEDGER = "chunk_done"
RESUME_KEY = "resume_key"


def begin(out: str | Path, overwrite: bool, *, inputs=(), nbytes: int | None = None) -> Path:
    """Lock ``out`` and return its staging path (an earlier run's staging store is kept)."""
    return prepare_output(out, overwrite, resume=True, inputs=inputs, nbytes=nbytes)


def same_key(found: Any, key: Any) -> bool:
    return json.dumps(found, sort_keys=True) == json.dumps(key, sort_keys=True)


def reopen(staging: str | Path, key: Any, needed: tuple[str, ...] = (), *, remove: bool = True):
    """The staging store of an earlier run with the same ``key`` and arrays, opened ``r+``, or None.

    With ``remove`` a leftover that does not match (or cannot be read) is deleted.
    """
    import shutil

    staging = Path(staging)
    if not staging.exists():
        return None
    try:
        group = open_for_writing(staging)
        if same_key(group.attrs.get(RESUME_KEY), key) and all(name in group for name in needed):
            return group
    except Exception:  # an unreadable leftover is simply replaced
        pass
    if remove:
        shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
    return None


def create(staging: str | Path, attrs: dict[str, Any], key: Any):
    """A new staging store with ``attrs`` and the resume ``key``; returns the group."""
    import zarr

    from kdeconv.io.store import write_every_chunk

    write_every_chunk()
    group = zarr.open_group(str(staging), mode="w")
    group.attrs.update({**attrs, RESUME_KEY: key})
    return group


def add_ledger(group, grid: tuple[int, ...], name: str = LEDGER, done: np.ndarray | None = None):
    """One done-marker per chunk of ``grid`` (0 = to do); ``done`` marks some as done already.

    Markers are written as chunks finish, so a finished store holds every chunk of its ledger.
    """
    ledger = group.create_array(name, shape=tuple(grid), chunks=(1,) * len(grid), dtype="uint8",
                                fill_value=0, config={"write_empty_chunks": True})
    if done is not None:
        ledger[...] = np.asarray(done, dtype=np.uint8)
    return ledger


def resize_ledger(group, grid: tuple[int, ...], name: str = LEDGER) -> None:
    """Grow or shrink the ledger to ``grid``; new chunks are to do."""
    ledger = group[name]
    if tuple(ledger.shape) != tuple(grid):
        ledger.resize(tuple(grid))


def mark_done(group, index: tuple[int, ...] | int, name: str = LEDGER, ledger=None) -> None:
    """Mark one chunk done. Call it only after all of the chunk's data is written.

    ``ledger``: the ledger array, when the caller has it open already.
    """
    index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
    (group[name] if ledger is None else ledger)[index] = 1


def pending(group, name: str = LEDGER) -> list[tuple[int, ...]]:
    """Indices of the chunks still to do, in order."""
    done = group[name][...]
    return [tuple(int(i) for i in idx) for idx in np.argwhere(done == 0)]


def done_count(group, name: str = LEDGER) -> int:
    return int(np.count_nonzero(group[name][...]))


def require_complete(group, out: str | Path, name: str = LEDGER) -> None:
    """Refuse to finish while a chunk has no marker (a worker vanished without raising)."""
    if not group[name][...].all():
        raise RuntimeError(f"some chunks of {out} were not written; rerun to resume")


def finish(staging: str | Path, out: str | Path) -> Path:
    """Rename the complete staging store into place and release the lock."""
    return finalize_output(Path(staging), out)


# -- run folders --------------------------------------------------------------------------------
RUN_KEY_FILE = "resume_key.json"


def write_file_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``path`` whole or not at all (``kdeconv.files.atomic_file``)."""
    with atomic_file(path) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def start_run(folder: str | Path, key: Any) -> None:
    """Mark ``folder`` as an unfinished run with settings ``key`` (``run_key`` reads it back)."""
    write_file_atomic(Path(folder) / RUN_KEY_FILE, json.dumps(key, sort_keys=True, indent=1) + "\n")


def run_key(folder: str | Path) -> Any | None:
    """The key an unfinished run folder was started with; None when it holds none (or not one
    that can be read)."""
    try:
        return json.loads((Path(folder) / RUN_KEY_FILE).read_text())
    except (OSError, ValueError):
        return None
