"""Errors that the CLI turns into one line on stderr: ``InputError`` exits 2, ``EnvironmentFault`` 1."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["InputError", "EnvironmentFault", "environment_fault", "mount_point"]


class InputError(Exception):
    """Bad usage or bad input: the user can fix it. The message is one line, no traceback.

    Raised anywhere (also inside Dask tasks: it pickles) and caught by the CLI.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class EnvironmentFault(Exception):
    """The machine, not the input, stopped the command: a full disk, no permission to write, a
    read-only file system. One line, no traceback, exit 1."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# errno of the OSErrors that say "the machine refused", and the words libraries put in their
# messages when they drop the errno (h5py: "errno = 28, error message = 'No space left on device'").
_FAULTS = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EACCES: "Permission denied",
    errno.EROFS: "Read-only file system",
}


def _fault_errno(err: BaseException) -> tuple[int, OSError | None] | None:
    """The fault errno of ``err`` or of an exception it wraps (cause/context chain)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FAULTS:
            return err.errno, err
        text = str(err)
        for code, words in _FAULTS.items():
            if words in text or f"errno = {code}," in text:
                return code, err if isinstance(err, OSError) else None
        err = err.__cause__ or err.__context__
    return None


def mount_point(path: str | Path) -> Path:
    """The mount point holding ``path`` (the nearest existing folder above it)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _free_mb(path: Path) -> float | None:
    import shutil

    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return None


def environment_fault(err: BaseException, output: str | Path | None = None,
                      needed_bytes: int | None = None) -> EnvironmentFault | None:
    """The one-line ``EnvironmentFault`` for an error caused by the machine, else None.

    ``output`` and ``needed_bytes``: what the command was writing and about how much it writes
    (they make "no space left" say where and how much).
    """
    if isinstance(err, EnvironmentFault):
        return err
    found = _fault_errno(err)
    if found is None:
        return None
    code, oserror = found
    filename = getattr(oserror, "filename", None) if oserror is not None else None
    where = Path(filename) if filename else Path(output) if output else None
    if code in (errno.ENOSPC, errno.EDQUOT):
        mount = mount_point(where) if where is not None else None
        what = "no space left on" if code == errno.ENOSPC else "disk quota exceeded on"
        device = str(mount) if mount is not None else "the output's device"
        details = []
        if needed_bytes:
            target = f"writing {Path(output).name} " if output else ""
            details.append(f"{target}needs about {max(1, round(needed_bytes / 2**20))} MB")
        free = _free_mb(mount) if mount is not None else None
        if free is not None:
            details.append(f"{free:.0f} MB free")
        return EnvironmentFault(f"{what} {device}" + (f" ({', '.join(details)})" if details else ""))
    if code == errno.EROFS:
        mount = mount_point(where) if where is not None else None
        return EnvironmentFault(f"read-only file system{f' at {mount}' if mount else ''}: "
                                f"cannot write {where or 'the output'}")
    if filename:
        return EnvironmentFault(f"permission denied: {filename}")
    return EnvironmentFault(f"permission denied writing {output or 'the output'}")
