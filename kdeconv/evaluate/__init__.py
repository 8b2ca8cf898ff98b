"""Evaluation against ground truth, and the simulated polycrystal map that provides it.

- ``metrics``: pixel metrics per pattern (NCC, PSNR, SSIM, best of two orderings, weight error),
  weight calibration per true-minority bin;
- ``indexing``: Hough indexing through kikuchipy/PyEBSDIndex against one or several phases (band
  families per phase) and misorientation with symmetry;
- ``reference``: the phases to index against and simulate from, through ``kdeconv.simulate.load_master``;
- ``recovery``: fractions of grains recovered, per minority-weight bin, phase pair and phase;
- ``baselines``: index the raw mixture; residual subtraction;
- ``report``/``driver``: ``kdeconv evaluate`` (metrics.json, PNG panels, report.md);
  ``kdeconv.evaluate(config, *, separated, truth, out)`` is ``driver.run``;
- ``polycrystal``/``simulate_map``: ``kdeconv simulate-map`` (UP2/UP1 + truth store; one or
  several phases, camera effects, raw or vendor-processed style).
"""

from kdeconv._exports import lazy_getattr, make_callable

__all__ = ["run", "EvaluateResult"]

__getattr__ = lazy_getattr(__name__, {name: "kdeconv.evaluate.driver" for name in ("run", "EvaluateResult")})

make_callable(__name__, "run")
