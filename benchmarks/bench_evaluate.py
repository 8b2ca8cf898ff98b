"""Evaluate-stage speed, as ratios measured in one run.

- pixel metrics (NCC + PSNR + SSIM of A and B in both orderings) against a bare numpy NCC of the
  same arrays (the cheapest possible score);
- kdeconv's indexing wrapper against one bare ``EBSD.hough_indexing`` call on the same patterns
  (the wrapper's overhead: flat-pattern filter, chunking, stdout capture);
- simulate-map (geometry + one simulated pattern per grain + realism + UP2 + truth store) against
  ``simulate_patterns`` of one pattern per pixel (what a naive map simulation would do).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import make_row


def _best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run(quick: bool = False) -> list[dict]:
    from kdeconv.config.detector import DetectorSpec
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.indexing import index_patterns
    from kdeconv.evaluate.metrics import ncc, pair_metrics
    from kdeconv.evaluate.reference import load_master_pattern, simulate_at
    from kdeconv.evaluate.simulate_map import simulate_map
    from kdeconv.simulate import random_quaternions

    rows = []
    n = 512 if quick else 4096
    rng = np.random.default_rng(0)
    a, b = rng.random((2, n, 60, 60), dtype=np.float32)
    t_metrics = _best_of(lambda: pair_metrics(a, b, b, a), 1 if quick else 2)
    t_ncc = _best_of(lambda: ncc(a, b), 3)
    rows.append(make_row("evaluate", "pixel metrics patterns/s", n / t_metrics, "numpy NCC only", n / t_ncc,
                         note=f"{n} pairs 60x60: NCC, PSNR, SSIM of A and B, best of 2 orderings vs one NCC"))

    mp, _ = load_master_pattern("ni")
    det = DetectorSpec(shape=(60, 60), pc=(0.5, 0.45, 0.55), sample_tilt=70).to_kikuchipy()
    m = 200 if quick else 1000
    pats = simulate_at(random_quaternions(np.random.default_rng(1), m), det)
    index_patterns(pats[:4], det, mp.phase)  # numba compile/cache load, outside the timing

    import kikuchipy as kp
    from orix.crystal_map import PhaseList

    pl = PhaseList(mp.phase)

    def bare():
        s = kp.signals.EBSD(pats)
        s.detector = det
        with contextlib.redirect_stdout(io.StringIO()):
            s.hough_indexing(phase_list=pl, indexer=det.get_indexer(pl), verbose=0)

    t_wrap = _best_of(lambda: index_patterns(pats, det, mp.phase), 2)
    t_bare = _best_of(bare, 2)
    rows.append(make_row("evaluate", "indexing patterns/s", m / t_wrap, "bare EBSD.hough_indexing",
                         m / t_bare,
                         note=f"{m} simulated Ni 60x60, PyEBSDIndex on CPU in one process"))

    nav = (20, 20) if quick else (50, 50)
    tmp = Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    try:
        cfg = SimulateMapConfig(nav_shape=nav, n_grains=12)
        t_map = _best_of(lambda: simulate_map(cfg, tmp / "sim", overwrite=True), 1)
        q = random_quaternions(np.random.default_rng(2), nav[0] * nav[1])
        t_naive = _best_of(lambda: simulate_at(q, det), 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    npx = nav[0] * nav[1]
    rows.append(make_row("simulate-map", "patterns/s", npx / t_map, "get_patterns per pixel", npx / t_naive,
                         note=f"{nav[0]}x{nav[1]} map incl. realism, UP2 and truth store vs projection only"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
