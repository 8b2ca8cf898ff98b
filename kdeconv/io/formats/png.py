"""A single PNG: one pattern, not a map (a folder of them is ``image_folder``)."""

from __future__ import annotations

from pathlib import Path

from kdeconv.errors import InputError
from kdeconv.io.formats import FormatSpec

__all__ = ["FORMAT"]


def read(path: Path, allow_size_mismatch: bool = False):
    raise InputError(f"a single PNG is one pattern; put the patterns of a map in a folder: {path}")


FORMAT = FormatSpec("png", "one PNG pattern (refused: a map is a folder of them)", ("png",), read=read)
