"""PNGs beside the separated store."""

import numpy as np

from kdeconv.separate.report import most_mixed, panels_png, weight_map_png


def test_most_mixed_picks_largest_wb_in_scan_order():
    w = np.zeros((2, 3, 2), np.float32)
    w[..., 1] = [[0.1, 0.5, 0.2], [0.5, np.nan, 0.3]]
    assert most_mixed(w, 3) == [(0, 1), (1, 0), (1, 2)]
    assert most_mixed(w[0], 1) == [(1,)]
    assert most_mixed(w, 0) == []


def test_pngs_are_written(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.random((4, 5, 2)).astype(np.float32)
    assert weight_map_png(w, tmp_path / "w.png").stat().st_size > 1000
    assert weight_map_png(w[0], tmp_path / "line.png").stat().st_size > 1000  # a line scan
    pats = [rng.integers(0, 65535, (16, 16), dtype=np.uint16) for _ in range(2)]
    out = panels_png(pats, pats, pats, [w[0, 0], w[0, 1]], [(0, 0), (0, 1)], tmp_path / "p.png")
    assert out.stat().st_size > 1000
