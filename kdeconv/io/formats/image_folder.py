"""A folder of 8- or 16-bit PNG/TIFF patterns, one per file, in name order."""

from __future__ import annotations

from pathlib import Path

from kdeconv.errors import InputError
from kdeconv.io.formats import FormatSpec
from kdeconv.io.layouts import ImageFilesLayout, _read_image, list_image_files
from kdeconv.io.sources import Source, check_2d, image_dtype

__all__ = ["FORMAT", "read"]


def read(path: Path, allow_size_mismatch: bool = False) -> Source:
    names = list_image_files(path)  # an unreadable folder or entry is an InputError naming it
    if not names:
        raise InputError(f"no PNG/TIFF images in folder {path}")
    first = _read_image(str(path / names[0]))
    sig = check_2d(first.shape, f"image {names[0]}")
    dtype = image_dtype(first.dtype, f"image {names[0]}")
    layout = ImageFilesLayout(str(path), len(names), sig, dtype.str)
    return Source(layout, (len(names),) + sig, dtype.newbyteorder("="),
                  {"path": str(path), "format": "image_folder", "first_file": names[0]})


FORMAT = FormatSpec("image_folder", "a folder of PNG/TIFF patterns", ("png", "tif", "tiff"), folder=True,
                    read=read)
