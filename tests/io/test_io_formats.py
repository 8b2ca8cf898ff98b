"""The format registry: one module per format, chosen by folder, extension or kikuchipy footprint."""

from pathlib import Path

import numpy as np
import pytest

from kdeconv.errors import InputError
from kdeconv.io import formats, write_up1


def test_every_format_module_registers_a_spec():
    specs = {spec.name: spec for spec in formats.formats()}
    assert set(specs) == {"image_folder", "tiff", "png", "edax_binary", "oxford_binary", "nordif",
                          "emsoft_ebsd", "h5ebsd"}
    for spec in specs.values():
        assert (spec.read is None) != (spec.read_header is None), spec.name  # reads one way
        assert (spec.write is None) == (spec.check_write is None) == (spec.write_itemsize is None), spec.name
    assert formats.write_suffixes() == (".tif", ".tiff", ".up1", ".up2", ".h5")


def test_readers_follow_folder_extension_and_kikuchipy(tmp_path):
    up1 = write_up1(tmp_path / "m.up1", np.zeros((2, 8, 8), np.uint8))
    assert formats.reader_for(up1)[0].name == "edax_binary" and formats.reader_for(up1)[1] == "edax_binary"
    assert formats.reader_for(tmp_path)[0].name == "image_folder"
    assert formats.reader_for(Path("a.TIF"))[0].name == "tiff"
    assert formats.reader_for(Path("a.png"))[0].name == "png"
    (tmp_path / "notes.xyz").write_text("x")
    with pytest.raises(InputError, match=r"unsupported input notes.xyz: '.xyz' files"):
        formats.reader_for(tmp_path / "notes.xyz")


def test_writers_follow_the_extension():
    assert formats.writer_for(Path("out.UP2")).name == "edax_binary"
    assert formats.writer_for(Path("out.h5")).name == "h5ebsd"
    assert formats.writer_for(Path("out.tiff")).name == "tiff"
    with pytest.raises(InputError, match="unsupported output extension '.h5oina'"):
        formats.writer_for(Path("out.h5oina"))
    edax = formats.writer_for(Path("out.up1"))
    assert "without losing data" in edax.check_write(np.dtype(np.uint16), ".up1")
    assert edax.check_write(np.dtype(np.uint8), ".up2") is None
    assert edax.write_itemsize(np.dtype(np.uint8), ".up2") == 2
