"""NORDIF binary .dat with its Setting.txt (read)."""

from __future__ import annotations

from pathlib import Path

from kdeconv.io.formats import FormatSpec
from kdeconv.io.layouts import RawLayout
from kdeconv.io.sources import file_size_check

__all__ = ["FORMAT", "read_header"]


def read_header(path: Path, plugin: str = "nordif", allow_size_mismatch: bool = False,
                notes: list[str] | None = None):
    """Layout, scan and detector of a NORDIF .dat file (from its Setting.txt)."""
    from kdeconv._kikuchipy import plugin_reader

    file_reader = plugin_reader("nordif")

    scan = file_reader(str(path), lazy=True)[0]
    ny, nx, sy, sx = scan["data"].shape
    n = ny * nx
    file_size_check(path, n * sy * sx, f"Setting.txt ({ny}x{nx} patterns of {sy}x{sx})")
    layout = RawLayout(str(path), 0, n, (sy, sx), "|u1")
    return layout, {"data_shape": scan["data"].shape, "axes": scan["axes"],
                    "detector": scan.get("detector")}


FORMAT = FormatSpec("nordif", "NORDIF .dat", ("dat",), read_header=read_header, kikuchipy_plugins=("nordif",))
