"""Config of ``kdeconv export``."""

from __future__ import annotations

from kdeconv.config import StrictModel


class ExportConfig(StrictModel):
    store: str
    output: str
    # Store array to write: `patterns` for a map store, `A` or `B` for a separated store.
    array: str = "patterns"
    overwrite: bool = False
