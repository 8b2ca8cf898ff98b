"""Shared fixtures for evaluate tests: one warm-up of PyEBSDIndex per test run, a tiny simulated map."""

from __future__ import annotations

import numpy as np
import pytest


def _write_separated(path, A, B, weights):
    """A minimal 'separated' store, as `kdeconv separate` writes it."""
    import zarr

    from kdeconv.io.store import store_attrs

    group = zarr.open_group(str(path), mode="w")
    for name, data in (("A", A), ("B", B), ("weights", weights)):
        group.create_array(name, data=np.ascontiguousarray(data))
    group.attrs.update(store_attrs("separated"))
    return path


@pytest.fixture
def write_separated():
    return _write_separated


@pytest.fixture(scope="session")
def warm_indexer():
    """Compile PyEBSDIndex's numba kernels once per test run (~70 s cold; seconds with numba's cache)."""
    from kdeconv.config.detector import DetectorSpec
    from kdeconv.evaluate.indexing import index_patterns
    from kdeconv.evaluate.reference import load_master_pattern, simulate_at

    mp, _ = load_master_pattern("ni")
    det = DetectorSpec(shape=(60, 60)).to_kikuchipy()
    q = np.array([[1.0, 0, 0, 0], [0.9238795, 0, 0.3826834, 0]])
    index_patterns(simulate_at(q, det), det, mp.phase)
    return det, mp.phase


@pytest.fixture(scope="session")
def tiny_map(tmp_path_factory):
    """An 8x8 simulated map (4 grains, a wide beam so there are mixtures) -> its folder."""
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import simulate_map

    out = tmp_path_factory.mktemp("simmap") / "sim"
    cfg = SimulateMapConfig(seed=3, nav_shape=(8, 8), n_grains=4,
                            footprint={"shape": "gaussian", "radius": 2.0, "supersample": 4})
    simulate_map(cfg, out)
    return out
