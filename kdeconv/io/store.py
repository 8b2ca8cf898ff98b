"""Store layout shared by every stage (DESIGN.md, "Stores").

Outputs are written to ``NAME.partial`` next to the target and renamed into place when complete,
so an interrupted or failed command never leaves a store that looks finished. Commands that can
resume (separate, generate) keep the ``.partial`` store and pick it up on the next run
(``kdeconv.io.resume``). While a command writes an output it holds an exclusive lock on
``NAME.partial.lock``: a second command on the same output is refused.

kdeconv writes every chunk of the arrays it creates, also those equal to the fill value (Zarr
skips them by default), so a missing chunk in a store it wrote is damage: ``open_store`` refuses it.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import errno
import fcntl
import itertools
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.errors import EnvironmentFault, InputError
from kdeconv.serialize import jsonable

__all__ = [
    "DEFAULT_CHUNK_MB", "nav_chunks", "partial_path", "lock_path", "prepare_output",
    "finalize_output", "discard_output", "release_output", "release_all_outputs", "active_output",
    "check_free_space", "store_attrs", "open_store", "open_for_writing", "write_every_chunk",
    "missing_chunk", "jsonable", "EVERY_CHUNK_WRITTEN",
]

DEFAULT_CHUNK_MB = 32.0
# Store attr: every chunk of every array was written, so a missing one is damage.
EVERY_CHUNK_WRITTEN = "every_chunk_written"


def nav_chunks(nav_shape: tuple[int, ...], sig_shape: tuple[int, ...], itemsize: int,
               chunk_mb: float = DEFAULT_CHUNK_MB) -> tuple[int, ...]:
    """Chunk shape over navigation axes only, each pattern whole, about ``chunk_mb`` per chunk.

    2D maps are chunked in whole rows when a row fits, otherwise in pieces of one row.
    """
    if not math.isfinite(chunk_mb) or chunk_mb <= 0:
        raise InputError(f"--chunk-mb must be a positive number, got {chunk_mb}")
    pattern_bytes = int(np.prod(sig_shape)) * itemsize
    per_chunk = max(1, int(min(chunk_mb * 2**20, 2**62)) // max(1, pattern_bytes))
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


def lock_path(path: str | Path) -> Path:
    """The lock file of an output: beside its staging store, ``NAME.partial.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".partial.lock")


# --------------------------------------------------------------------------- outputs and locks

# Locks held by this process: lock file -> open descriptor. flock() locks die with the process,
# also on kill -9, so a stale lock file never blocks a later run.
_LOCKS: dict[str, int] = {}
# The outputs this process wrote and about how many bytes each takes: "no space left" says so
# (also after the failed output's lock was released). Cleared when a command ends.
_ACTIVE: dict[str, Any] = {}


def _real(path: str | Path) -> Path:
    """Absolute path with symlinks resolved (also for a path that does not exist yet)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _related(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_not_input(path: str | Path, inputs=()) -> None:
    """An output must not be an input, lie inside one, or contain one (symlinks resolved)."""
    path = Path(path)
    targets = [_real(p) for p in (path, partial_path(path), lock_path(path))]
    for given in inputs:
        if given is None:
            continue
        real = _real(given)
        if any(_related(target, real) for target in targets):
            if targets[0] == real:
                raise InputError(f"the output {path} is the input {given}: choose another output")
            if targets[0].is_relative_to(real):
                raise InputError(f"the output {path} lies inside the input {given}: choose another output")
            raise InputError(f"the output {path} would contain the input {given}: choose another output")


def lock_output(path: str | Path) -> Path:
    """Take the exclusive lock of output ``path`` for this process (a no-op when held already).

    A lock held by another process is an ``InputError`` naming its pid.
    """
    lock = lock_path(path)
    key = str(_real(lock))
    if key in _LOCKS:
        return lock
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _output_fault(err, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"{path} is being written by another kdeconv (pid {holder}); "
                             "wait for it to finish or stop it") from None
        # The holder removes the file on release: if it did so between our open and flock, we
        # hold a lock on a file nobody sees; try again on the file that is there now.
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _LOCKS[key] = fd
    return lock


def release_output(path: str | Path) -> None:
    """Give up the lock of output ``path`` (its staging store, if any, stays)."""
    lock = lock_path(path)
    fd = _LOCKS.pop(str(_real(lock)), None)
    if fd is None:
        return
    try:
        os.unlink(lock)  # while still holding it: see lock_output
    except OSError:
        pass
    os.close(fd)


def release_all_outputs() -> None:
    """Release every output lock this process holds (the CLI calls it when a command ends)."""
    for key in list(_LOCKS):
        fd = _LOCKS.pop(key)
        try:
            os.unlink(key)
        except OSError:
            pass
        os.close(fd)
    _ACTIVE.clear()


atexit.register(release_all_outputs)  # no lock file outlives a process that ends normally


def active_output() -> tuple[Path, int | None] | None:
    """(output, about how many bytes it needs) of the output this process writes, if any."""
    if not _ACTIVE:
        return None
    path, nbytes = next(reversed(_ACTIVE.values()))
    return path, nbytes


def _output_fault(err: OSError, path: str | Path):
    from kdeconv.errors import environment_fault

    return environment_fault(err, output=path) or err


def check_free_space(path: str | Path, nbytes: int) -> None:
    """Refuse before writing when the output's file system has less than ``nbytes`` free."""
    from kdeconv.errors import mount_point

    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < nbytes:
        raise EnvironmentFault(f"no space left on {mount_point(folder)} (writing {Path(path).name} "
                               f"needs about {max(1, round(nbytes / 2**20))} MB, "
                               f"{free / 2**20:.0f} MB free)")


def _check_writable(folder: Path) -> None:
    if os.access(folder, os.W_OK | os.X_OK):
        return
    from kdeconv.errors import mount_point

    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise EnvironmentFault(f"read-only file system at {mount_point(folder)}: cannot write in {folder}")
    raise EnvironmentFault(f"permission denied: cannot write in {folder}")


def prepare_output(path: str | Path, overwrite: bool, *, resume: bool = False, inputs=(),
                   nbytes: int | None = None) -> Path:
    """Check the target, take its lock and return the staging path to write into.

    Refuses (``InputError``) an existing output without ``overwrite``, a missing output folder,
    an output that is, lies inside or contains one of ``inputs``, and an output that another
    kdeconv is writing; an unwritable folder is an ``EnvironmentFault``. With ``resume`` an
    existing ``.partial`` is kept so the command can skip finished work. ``nbytes`` (about how
    much the output takes) only improves the "no space left" message. Nothing is created here
    but the lock file.
    """
    path = Path(path)
    check_not_input(path, inputs)
    if path.exists() and not overwrite:
        raise InputError(f"output already exists: {path} (use --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"output folder does not exist: {parent}")
    if not parent.is_dir():
        raise InputError(f"output folder is not a folder: {parent}")
    _check_writable(parent)
    lock_output(path)
    _ACTIVE[str(_real(path))] = (path, nbytes)
    staging = partial_path(path)
    if staging.exists() and (overwrite or not resume):
        shutil.rmtree(staging) if staging.is_dir() and not staging.is_symlink() else staging.unlink()
    return staging


def finalize_output(staging: Path, path: str | Path) -> Path:
    """Move a complete staging store into place (replacing an old one only now, when safe),
    then release the output's lock."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    staging.rename(path)
    release_output(path)
    return path


def discard_output(staging: Path, path: str | Path | None = None) -> None:
    """Remove a failed command's staging store (file or folder) and release the lock."""
    staging = Path(staging)
    if staging.is_dir() and not staging.is_symlink():
        shutil.rmtree(staging, ignore_errors=True)
    elif staging.exists() or staging.is_symlink():
        staging.unlink()
    if path is None and staging.name.endswith(".partial"):
        path = staging.with_name(staging.name[: -len(".partial")])
    if path is not None:
        release_output(path)


def write_every_chunk() -> None:
    """Make this process's Zarr write chunks equal to the fill value too (Zarr 3 skips them)."""
    import zarr

    if not zarr.config.get("array.write_empty_chunks"):
        zarr.config.set({"array.write_empty_chunks": True})


def open_for_writing(path: str | Path) -> zarr.Group:  # noqa: F821
    """A store of kdeconv's opened ``r+`` to write chunks into (from any process, workers too)."""
    import zarr

    write_every_chunk()
    return zarr.open_group(str(path), mode="r+")


def store_attrs(kind: str, config: Any = None, source: dict | None = None,
                **extra: Any) -> dict[str, Any]:
    """The attrs every store carries: kind, version, command line, config, source.

    Called by every writer before it creates arrays, so it also sets the every-chunk policy.
    """
    from kdeconv import __version__

    write_every_chunk()
    attrs = {
        "kdeconv_kind": kind,
        "kdeconv_version": __version__,
        "command": " ".join(["kdeconv"] + sys.argv[1:]) if Path(sys.argv[0]).name == "kdeconv"
        else " ".join(sys.argv),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": jsonable(config) if config is not None else {},
        "source": jsonable(source or {}),
        EVERY_CHUNK_WRITTEN: True,
    }
    attrs.update(jsonable(extra))
    return attrs


def missing_chunk(array) -> str | None:
    """The key of the first chunk of ``array`` that is not in its store, or None.

    One listing of the array's keys (cheap next to reading the chunks).
    """
    from zarr.core.sync import sync

    store_path = array.store_path
    prefix = f"{store_path.path}/" if store_path.path else ""

    async def listed() -> set[str]:
        return {key[len(prefix):] async for key in store_path.store.list_prefix(prefix)}

    found = sync(listed())
    grid_of = array.shards or array.chunks
    grid = tuple(-(-n // c) for n, c in zip(array.shape, grid_of))
    for coords in itertools.product(*(range(n) for n in grid)):
        key = array.metadata.encode_chunk_key(coords)
        if key not in found:
            return key
    return None


def open_store(path: str | Path, kind: str | None = None,
               arrays: tuple[str, ...] = ()) -> zarr.Group:  # noqa: F821
    """Open a finished kdeconv store read-only, or raise ``InputError`` saying what is wrong.

    Each of ``arrays`` must exist with readable metadata and, in a store kdeconv wrote, all its
    chunks (a missing chunk would otherwise read as zeros).
    """
    import zarr

    path = Path(path)
    if not path.exists():
        if partial_path(path).exists():
            raise InputError(f"store {path} is incomplete ({partial_path(path).name} exists): "
                             "rerun the command that makes it")
        raise InputError(f"store not found: {path}")
    if path.is_file():
        hint = (f"; `kdeconv ingest {path} map.zarr` reads a vendor file or image into one"
                if kind == "map" else "")
        raise InputError(f"{path} is a file, not a Zarr store (a folder){hint}")
    try:
        group = zarr.open_group(str(path), mode="r")
        found = group.attrs.get("kdeconv_kind")
    except Exception as err:  # zarr raises several types for "not a group"
        raise InputError(f"not a Zarr store: {path} ({type(err).__name__}: unreadable zarr.json?)") from None
    if kind is not None and found != kind:
        what = f"a kdeconv '{found}' store" if found else "not a kdeconv store"
        raise InputError(f"{path} is {what}; expected a '{kind}' store")
    for name in arrays:
        check_array(group, name, path)
    return group


def check_array(group, name: str, path: str | Path):
    """``group[name]``, checked: metadata readable and (in a kdeconv store) every chunk present."""
    try:
        present = name in group
        array = group[name] if present else None
    except Exception as err:  # truncated or edited zarr.json: JSONDecodeError, ValueError, ...
        raise InputError(f"store {path} is damaged: {name}/zarr.json is unreadable "
                         f"({type(err).__name__})") from None
    if array is None:
        try:
            names = ", ".join(sorted(group.array_keys()))
        except Exception:
            names = "?"
        raise InputError(f"store {path} has no array '{name}' (has: {names})")
    if group.attrs.get(EVERY_CHUNK_WRITTEN):
        key = missing_chunk(array)
        if key is not None:
            raise InputError(f"store {path} is damaged: chunk {name}/{key} is missing "
                             f"({name} is {tuple(array.shape)} in chunks of {tuple(array.chunks)}); "
                             "re-create the store with the command that made it")
    return array
