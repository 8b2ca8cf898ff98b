"""Fixtures of the separate tests (helpers live in separate_maps.py, importable by name)."""

from __future__ import annotations

import numpy as np
import pytest
from separate_maps import blobs, write_map


@pytest.fixture
def make_map(tmp_path):
    def make(name="map.zarr", shape=(6, 8, 32, 32), dtype=np.uint16, nav_chunk=(2, 8), seed=0):
        data = blobs(shape, dtype, seed)
        return write_map(tmp_path / name, data, nav_chunk), data

    return make
