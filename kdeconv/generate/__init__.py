"""Stage ``generate``: synthetic (C, A, B) training pairs. Per-chunk kernels in ``chunk``/``augment``,
the Dask/Zarr driver in ``driver``; ``kdeconv.generate(config, *, out)`` is ``run``."""

from kdeconv._exports import lazy_getattr, make_callable
from kdeconv.generate.augment import AUGMENT_COLUMNS
from kdeconv.generate.chunk import build_pairs, draw_pairs, noise_rng, pair_rng

__all__ = ["run", "GenerateResult", "AUGMENT_COLUMNS", "build_pairs", "draw_pairs", "noise_rng", "pair_rng",
           "run_generate"]

__getattr__ = lazy_getattr(__name__, {name: "kdeconv.generate.driver"
                                      for name in ("run", "GenerateResult", "run_generate")})

make_callable(__name__, "run")
