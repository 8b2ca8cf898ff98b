"""``kdeconv export``: one store array -> a pattern file in the format its extension names
(``kdeconv.io.formats``: kikuchipy h5ebsd, EDAX UP1/UP2 or multi-page TIFF).

All three are lossless and stream chunk by chunk. The output is written to ``OUT.partial`` and
renamed at the end, so a failed export never leaves a file that looks complete: on any error,
a full disk included, the partial file is removed. The files are uncompressed, so an export that
cannot fit is refused before it starts.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdeconv.config.cluster import ClusterConfig
from kdeconv.config.export import ExportConfig
from kdeconv.errors import InputError, environment_fault
from kdeconv.io.formats import writer_for
from kdeconv.io.store import check_free_space, discard_output, finalize_output, open_store, prepare_output

__all__ = ["export", "ExportResult"]


@dataclass
class ExportResult:
    out: Path
    patterns: int
    format: str        # the registry's format name (edax_binary, h5ebsd, tiff)
    seconds: float


def export(config: ExportConfig | dict | str | Path, cluster: ClusterConfig | None = None, *,
           client=None, progress: bool | None = True, echo: Callable[[str], None] = print) -> ExportResult:
    """Write ``config.array`` of the store ``config.store`` to ``config.output`` (``kdeconv.export``).

    ``config``: an ``ExportConfig``, a dict or a YAML path. UP1/UP2 are written by the workers of
    ``client`` (else of a cluster started from ``cluster``); h5ebsd and TIFF by this process.
    """
    import zarr  # noqa: F401  (open_store needs it; fail early if missing)

    from kdeconv.cluster import summary_line
    from kdeconv.config import coerce_config

    config = coerce_config(ExportConfig, config)
    output = Path(config.output)
    suffix = output.suffix.lower()
    spec = writer_for(output)
    group = open_store(config.store, arrays=(config.array,))  # also: every chunk is there
    array = group[config.array]
    if array.ndim not in (3, 4):
        raise InputError(f"array '{config.array}' has shape {array.shape}; export needs patterns "
                         "(n, sy, sx) or (ny, nx, sy, sx)")
    if min(array.shape[-2:]) < 4:
        raise InputError(f"array '{config.array}' has shape {array.shape}: its last two axes are not "
                         "a pattern (export patterns, A or B)")
    dtype = np.dtype(array.dtype)
    refused = spec.check_write(dtype, suffix)
    if refused:
        raise InputError(refused)
    source = dict(group.attrs.get("source") or {})
    n = int(np.prod(array.shape[:-2]))
    itemsize = spec.write_itemsize(dtype, suffix)
    nbytes = n * int(np.prod(array.shape[-2:])) * itemsize + 2**16  # + headers, metadata
    staging = prepare_output(output, config.overwrite, inputs=(config.store,), nbytes=nbytes)
    try:
        check_free_space(output, nbytes)
        start = time.perf_counter()
        spec.write(staging, array, source, suffix=suffix, client=client, cluster=cluster, progress=progress,
                   echo=echo)
        seconds = time.perf_counter() - start
        finalize_output(staging, output)
    except BaseException as err:
        disk_full = _short_write_on_full_disk(err, output, nbytes)
        discard_output(staging, output)
        if disk_full:
            raise environment_fault(OSError(errno.ENOSPC, "No space left on device"),
                                    output, nbytes) from None
        raise
    echo(summary_line(f"export {config.array} -> {output.name}", n, seconds))
    return ExportResult(output, n, spec.name, seconds)


def _short_write_on_full_disk(err: BaseException, output: Path, nbytes: int) -> bool:
    """numpy's short write ("N requested and 0 written", no errno), as TIFF writing raises it,
    on a file system left with less than the output needs: a full disk."""
    import re
    import shutil

    if not (isinstance(err, OSError) and err.errno is None
            and re.search(r"\d+ requested and \d+ written", str(err))):
        return False
    try:
        return shutil.disk_usage(output.parent).free < nbytes
    except OSError:
        return False
