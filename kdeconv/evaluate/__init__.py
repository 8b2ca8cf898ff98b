"""Evaluation against ground truth, and the simulated polycrystal map that provides it.

- ``metrics``: pixel metrics per pattern (NCC, PSNR, SSIM, best of two orderings, weight error);
- ``indexing``: Hough indexing through kikuchipy/PyEBSDIndex and misorientation with symmetry;
- ``recovery``: fractions of grains recovered, per minority-weight bin;
- ``baselines``: index the raw mixture; residual subtraction;
- ``report``/``driver``: ``kdeconv evaluate`` (metrics.json, PNG panels, report.md);
- ``polycrystal``/``simulate_map``: ``kdeconv simulate-map`` (UP2 + truth store).
"""
