"""Oxford Instruments binary .ebsp (read)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from kdeconv.errors import InputError
from kdeconv.io.formats import FormatSpec
from kdeconv.io.layouts import OffsetTableLayout, RawLayout
from kdeconv.io.sources import file_size_check

__all__ = ["FORMAT", "read_header"]


def read_header(path: Path, plugin: str = "oxford_binary", allow_size_mismatch: bool = False,
                notes: list[str] | None = None):
    """Layout and scan of an Oxford .ebsp file (patterns in order, or through its offset table)."""
    from kdeconv._kikuchipy import plugin_reader

    OxfordBinaryFileReader = plugin_reader("oxford_binary")

    with open(path, "rb") as f:
        try:
            reader = OxfordBinaryFileReader(f)  # reads the header and offset table, maps the file
        except (ValueError, IndexError, OSError, struct.error) as err:
            raise InputError(f"{path.name} is truncated or damaged: no complete pattern table "
                             f"({type(err).__name__})") from None
        dtype = np.dtype(reader.dtype).newbyteorder("<")
        # Axes as reader.get_scan makes them, without its reads of every pattern footer.
        axes = [{"name": name, "scale": float(step), "units": reader.scan_unit}
                for name, step in zip(reader.axes_names, reader.step_sizes)]
        data_shape = tuple(int(v) for v in reader.data_shape)
        n = reader.n_patterns_present
        record = reader.pattern_header_size + int(reader.n_bytes) + reader.pattern_footer_size
        ordered = not reader.all_patterns_present or np.allclose(np.diff(reader.pattern_order), 1)
        if ordered:
            layout = RawLayout(str(path), int(reader.first_pattern_position), n,
                               tuple(map(int, reader.signal_shape)), dtype.str,
                               record_bytes=record, skip=reader.pattern_header_size)
            file_size_check(path, reader.first_pattern_position + n * record, f"{n} patterns")
        else:
            layout = OffsetTableLayout(str(path), int(reader.pattern_starts_byte_position), n,
                                       tuple(map(int, reader.signal_shape)), dtype.str,
                                       skip=reader.pattern_header_size)
            starts = reader.get_pattern_starts()
            file_size_check(path, int(starts.max()) + record if starts.size else 0, f"{n} patterns")
        del reader
    return layout, {"data_shape": data_shape, "axes": axes}


FORMAT = FormatSpec("oxford_binary", "Oxford Instruments .ebsp", ("ebsp",), read_header=read_header,
                    kikuchipy_plugins=("oxford_binary",))
