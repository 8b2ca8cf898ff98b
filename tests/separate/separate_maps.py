"""Map stores for the separate tests, written the way `kdeconv ingest` lays them out."""

from __future__ import annotations

import numpy as np

from kdeconv.io.store import store_attrs

SOURCE = {"path": "synthetic", "format": "test",
          "scan": {"step_x": 1.5, "step_y": 1.5, "unit": "um"},
          "detector": {"shape": [32, 32], "pc": [0.5, 0.5, 0.5], "sample_tilt": 70.0}}


def write_map(path, patterns: np.ndarray, nav_chunk: tuple[int, ...], source=SOURCE):
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("map", source=source))
    group.create_array("patterns", data=patterns, chunks=tuple(nav_chunk) + patterns.shape[-2:])
    return path


def blobs(shape, dtype, seed=0) -> np.ndarray:
    """Smooth bright blobs on a background, a little noise: pattern-like, deterministic."""
    rng = np.random.default_rng(seed)
    *nav, sy, sx = shape
    n = int(np.prod(nav))
    y, x = np.mgrid[:sy, :sx]
    centres = rng.random((n, 2, 2)) * [sy, sx]
    img = 0.3 + 0.2 * (y / sy)[None]
    for k in range(2):
        cy, cx = centres[:, k, 0, None, None], centres[:, k, 1, None, None]
        img = img + np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (sx / 6) ** 2))
    img = img + 0.02 * rng.standard_normal(img.shape)
    img = (img - img.min()) / (img.max() - img.min())
    if np.dtype(dtype).kind in "ui":
        img = np.rint(img * 0.8 * np.iinfo(dtype).max)
    return img.reshape(shape).astype(dtype)
