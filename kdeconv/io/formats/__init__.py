"""Pattern file formats, one module per format, chosen from a registry (as kikuchipy's plugins).

Each module defines ``FORMAT``, a ``FormatSpec``: its name, the file extensions it takes, and
what it can do: ``read`` (a whole input -> ``kdeconv.io.sources.Source``), ``read_header`` (a
vendor file that kikuchipy recognises -> its pattern layout and scan metadata, read without the
patterns), ``write`` (a store array -> a file) with ``check_write`` (why a dtype cannot be
written, or None). ``open_source`` and ``export`` pick a format here instead of branching on
names and suffixes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdeconv.errors import InputError

__all__ = ["FormatSpec", "FORMAT_MODULES", "formats", "reader_for", "writer_for", "write_suffixes"]


@dataclass(frozen=True)
class FormatSpec:
    name: str                                   # as in a map store's attrs["source"]["format"]
    description: str
    extensions: tuple[str, ...] = ()            # lower case, without the dot
    folder: bool = False                        # a folder of files rather than one file
    read: Callable | None = None                # (path, allow_size_mismatch) -> Source
    # (path, plugin_name, allow_size_mismatch, notes) -> (layout, scan)
    read_header: Callable | None = None
    kikuchipy_plugins: tuple[str, ...] = ()     # kikuchipy plugins whose files read_header takes
    # (path, array, source, *, suffix, client, cluster, progress, echo) -> Path
    write: Callable | None = None
    write_extensions: tuple[str, ...] = ()      # the extensions ``write`` takes
    check_write: Callable | None = None         # (dtype, suffix) -> reason it cannot be written, or None
    write_itemsize: Callable | None = None      # (dtype, suffix) -> bytes per pixel in the file


FORMAT_MODULES = ("image_folder", "tiff", "png", "edax_binary", "oxford_binary", "nordif", "emsoft_ebsd",
                  "h5ebsd")


def formats() -> list[FormatSpec]:
    """Every registered format."""
    return [importlib.import_module(f"kdeconv.io.formats.{name}").FORMAT for name in FORMAT_MODULES]


def _unsupported(path: Path, what: str) -> InputError:
    return InputError(f"unsupported input {path.name}: {what} is not an EBSD pattern format "
                      "(UP1/UP2, .ebsp, NORDIF .dat, h5ebsd, .h5oina, EMsoft EBSD .h5, "
                      "TIFF or an image folder)")


def reader_for(path: Path) -> tuple[FormatSpec, str | None]:
    """The format that reads ``path`` and, for a vendor file, the kikuchipy plugin that
    recognises it (by extension, then by its HDF5 footprint, as ``kikuchipy.load`` does)."""
    specs = formats()
    if path.is_dir():
        return next(s for s in specs if s.folder), None
    ext = path.suffix[1:].lower()
    for spec in specs:
        if spec.read is not None and not spec.folder and ext in spec.extensions:
            return spec, None
    plugin = _kikuchipy_plugin(path, ext)
    for spec in specs:
        if plugin is not None and plugin["name"] in spec.kikuchipy_plugins:
            return spec, plugin["name"]
    raise _unsupported(path, plugin["name"] if plugin else f"'.{ext}' files")


def _kikuchipy_plugin(path: Path, ext: str) -> dict | None:
    import h5py

    from kdeconv._kikuchipy import plugin_from_footprints, plugins

    candidates = [p for p in plugins() if ext in p["file_extensions"]]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    if not h5py.is_hdf5(str(path)):
        raise InputError(f"{path} is not an HDF5 file")
    try:
        return plugin_from_footprints(str(path), candidates)
    except Exception as err:
        raise InputError(f"cannot identify {path}: {type(err).__name__}: {err}") from None


def write_suffixes() -> tuple[str, ...]:
    """Output extensions ``export`` writes (with the dot)."""
    return tuple(f".{ext}" for spec in formats() if spec.write is not None for ext in spec.write_extensions)


def writer_for(path: Path) -> FormatSpec:
    """The format ``export`` writes ``path`` in, from its extension."""
    ext = Path(path).suffix[1:].lower()
    for spec in formats():
        if spec.write is not None and ext in spec.write_extensions:
            return spec
    raise InputError(f"unsupported output extension '{Path(path).suffix}': use .h5, .up2, .up1 or .tif")
