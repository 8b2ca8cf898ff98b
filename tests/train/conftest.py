"""A tiny pairs store written directly with zarr (layout of docs/ARCHITECTURE.md)."""

import numpy as np
import pytest


def band_patterns(rng, n, shape):
    """Smooth random 'Kikuchi-like' patterns: a few bright straight bands on a ramp."""
    sy, sx = shape
    y, x = np.mgrid[0:sy, 0:sx].astype(np.float32)
    out = np.empty((n, sy, sx), np.float32)
    for i in range(n):
        img = 0.2 + 0.1 * y / sy
        for _ in range(4):
            theta, rho, width = rng.uniform(0, np.pi), rng.uniform(-0.4, 0.4), rng.uniform(1.5, 3)
            d = x * np.cos(theta) + y * np.sin(theta) - (sx / 2 * np.cos(theta) + sy / 2 * np.sin(theta)
                                                         + rho * sx)
            img = img + np.exp(-0.5 * (d / width) ** 2)
        out[i] = img
    return out


def write_pairs(path, n=96, shape=(24, 24), chunk=32, seed=0):
    import zarr

    from kdeconv.io.store import store_attrs

    rng = np.random.default_rng(seed)
    a = band_patterns(rng, n, shape)
    b = band_patterns(rng, n, shape)
    w_a = rng.uniform(0.5, 0.9, n).astype(np.float32)
    c = w_a[:, None, None] * a + (1 - w_a[:, None, None]) * b
    c = rng.poisson(c * 400).astype(np.float32)

    def u16(x):
        return np.round(x / x.max() * 65535).astype(np.uint16)

    g = zarr.open_group(str(path), mode="w")
    g.attrs.update(store_attrs("pairs", {"test": "tiny"}))
    for name, arr in (("C", u16(c)), ("A", u16(a)), ("B", u16(b))):
        g.create_array(name, shape=arr.shape, chunks=(chunk,) + shape, dtype="uint16")[:] = arr
    wts = np.stack([w_a, 1 - w_a], axis=1)
    g.create_array("weights", shape=wts.shape, chunks=(chunk, 2), dtype="float32")[:] = wts
    return path


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.zarr")


@pytest.fixture(scope="session")
def debug_pairs(tmp_path_factory):
    """96 realistic pairs (simulated Ni, 60x60) made by the real `kdeconv generate`."""
    from click.testing import CliRunner

    from kdeconv.cli import main

    out = tmp_path_factory.mktemp("generated") / "pairs.zarr"
    result = CliRunner().invoke(main, ["generate", "--config", "kdeconv/configs/generate_debug.yaml",
                                       "--out", str(out), "--n", "96", "--workers", "1",
                                       "--threads-per-worker", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def tiny_val_pairs(tmp_path_factory):
    """40 other pairs of the same kind, for a separate validation set."""
    return write_pairs(tmp_path_factory.mktemp("val_pairs") / "val.zarr", n=40, chunk=16, seed=1)
