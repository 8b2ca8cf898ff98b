"""Synthetic (C, A, B) training pairs: per-chunk kernels in ``chunk``/``augment``, the Dask/Zarr
driver in ``driver``."""

from kdeconv.generate.augment import AUGMENT_COLUMNS
from kdeconv.generate.chunk import build_pairs, draw_pairs, noise_rng, pair_rng

__all__ = ["AUGMENT_COLUMNS", "build_pairs", "draw_pairs", "noise_rng", "pair_rng", "run_generate"]


def __getattr__(name):
    if name == "run_generate":
        from kdeconv.generate.driver import run_generate

        return run_generate
    raise AttributeError(name)
