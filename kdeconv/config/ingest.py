"""Config of ``kdeconv ingest``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdeconv.config import StrictModel
from kdeconv.io.store import DEFAULT_CHUNK_MB


class IngestConfig(StrictModel):
    input: str
    output: str
    # Target MB per Zarr chunk (chunks split navigation axes only).
    chunk_mb: float = Field(default=DEFAULT_CHUNK_MB, gt=0, allow_inf_nan=False)
    # (NY, NX) grid for inputs without one (image folders, TIFF) or to regrid a line scan.
    nav_shape: tuple[int, int] | None = None
    # The dtype the user expects (e.g. uint16 for a 16-bit camera): anything else is refused,
    # never converted. None accepts the source dtype as it is.
    dtype: Literal["uint8", "uint16", "float32"] | None = None
    # A vendor file whose header's pattern count disagrees with its size is refused; with this,
    # a file longer than its header says is read as the header says (with a warning).
    allow_size_mismatch: bool = False
    overwrite: bool = False
