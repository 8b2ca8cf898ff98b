"""The residual pass: the minority pattern separated again from what the dominant one leaves.

Near equal weights the network's minority output B carries its crystal's bands less cleanly
than the dominant output A carries its own. For every pattern whose minority weight reaches
``min_weight``, C is fitted by least squares as ``alpha*A + beta*B + gamma`` (the network's
inputs and outputs are each stretched to [0, 1], so C is a mixture of A and B only up to gain
and offset); the residual ``C - alpha*A - gamma`` holds B and what A missed. Made into inputs by
the checkpoint's own recipe, it is separated once more, and that pass's dominant output replaces B
from minority ``REPLACE_FROM`` (0.3) up; between ``min_weight`` and 0.3 the two Bs are averaged
(there each holds errors of its own). Where the two are near equal (minority ``A_AGAIN_FROM``,
0.3, and up) the network's dominant output can itself carry some of the other crystal, so A is
then separated again in turn, from what the new B leaves (``C - beta*B - gamma``), and replaced.
The weights stay the first pass's, and A below 0.3. Below ``min_weight`` the residual is mostly
noise and the first B is kept.

Pure torch on normalised network inputs; ``kdeconv.model.Separator.forward_tensor`` calls it on
the CPU and in the device pipeline alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from kdeconv.preprocess import torch_kernels as tk

__all__ = ["residual_pass", "fit_residual", "REPLACE_FROM", "A_AGAIN_FROM"]

# Minority weight from which the second B replaces the first instead of being averaged with it.
# On simulated library maps, replacing from 0.2 lost 5-10 points of the 0.2-0.3 bin; averaging
# there gained 2-10 (kdeconv's model card).
REPLACE_FROM = 0.3
# Minority weight from which A is separated again from the residual after the new B. On simulated
# hcp maps it lifted the 0.4-0.5 bin where both outputs had come out as one crystal (Mg 54 -> 68%);
# below 0.3 A is clean and it changed nothing (kdeconv's model card).
A_AGAIN_FROM = 0.3

# normalised inputs (n, sy, sx) -> the heavier constituent of each (n, sy, sx)
Dominant = Callable[[torch.Tensor], torch.Tensor]


def _dominant_first(a: torch.Tensor, b: torch.Tensor, w_a: torch.Tensor):
    swap = w_a < 0.5
    return (torch.where(swap[:, None, None], b, a), torch.where(swap[:, None, None], a, b),
            torch.where(swap, 1.0 - w_a, w_a))


def fit_residual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 inside: torch.Tensor | None = None) -> torch.Tensor:
    """``C - alpha*A - gamma`` per pattern, where ``alpha*A + beta*B + gamma`` is C's least-squares
    fit (float32 ``(n, sy, sx)``). ``inside`` ``(n, sy, sx)`` bool: the pixels fitted (a masked
    pattern's circle); the residual is 0 elsewhere."""
    n, shape = c.shape[0], c.shape
    c, a, b = c.float().reshape(n, -1), a.float().reshape(n, -1), b.float().reshape(n, -1)
    keep = torch.ones_like(c) if inside is None else inside.reshape(n, -1).float()
    design = torch.stack([a * keep, b * keep, keep], dim=-1)            # (n, p, 3)
    gram = design.transpose(1, 2) @ design                              # (n, 3, 3)
    # a ridge of 1e-6 of the diagonal keeps the solve defined when A and B coincide
    ridge = 1e-6 * gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
    gram = gram + ridge[:, None, None] * torch.eye(3, dtype=gram.dtype, device=gram.device)
    coef = torch.linalg.solve(gram, design.transpose(1, 2) @ (c * keep)[..., None])[..., 0]
    residual = (c - coef[:, 0:1] * a - coef[:, 2:3]) * keep
    return residual.reshape(shape)


def residual_pass(dominant: Dominant, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, w_a: torch.Tensor,
                  min_weight: float, spec: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A, B and wA (A dominant) after the residual pass on the patterns whose minority weight is
    at least ``min_weight`` (the second B averaged with the first below ``REPLACE_FROM``; A
    separated again from ``A_AGAIN_FROM`` up).

    ``dominant``: normalised inputs ``(n, sy, sx)`` -> the heavier constituent of each (only it
    is used from the second pass, so a network need decode nothing else); ``x``: the inputs
    ``a, b, w_a`` came from, made by the checkpoint's normalisation recipe ``spec``
    (``kdeconv.model.inputs``); the residual is made into inputs by the same recipe, keeping
    the circular mask of the patterns that arrived masked.
    """
    a, b, w_a = _dominant_first(a, b, w_a)
    rows = torch.nonzero(1.0 - w_a >= min_weight).flatten()
    if rows.numel() == 0:
        return a, b, w_a
    c = x[rows].float()
    masked = (tk.detect_masked(c) if spec["mask"] == "auto"
              else torch.zeros(len(c), dtype=torch.bool, device=c.device))
    inside = tk.mask_tensor(tuple(c.shape[-2:]), c.device)[None] | ~masked[:, None, None]
    residual = fit_residual(c, a[rows], b[rows], inside)
    b_new = dominant(tk.prepare_inputs(residual, spec, masked)[0]).float()
    faint = (1.0 - w_a[rows] < max(REPLACE_FROM, min_weight))[:, None, None]
    b_new = torch.where(faint, 0.5 * (b_new + b[rows]), b_new)
    b_new = torch.where(inside, b_new, torch.zeros_like(b_new))
    b = b.clone()
    b[rows] = b_new
    near = torch.nonzero(1.0 - w_a[rows] >= max(A_AGAIN_FROM, min_weight)).flatten()
    if near.numel():
        residual = fit_residual(c[near], b_new[near], a[rows][near], inside[near])
        a_new = dominant(tk.prepare_inputs(residual, spec, masked[near])[0]).float()
        a = a.clone()
        a[rows[near]] = torch.where(inside[near], a_new, torch.zeros_like(a_new))
    return a, b, w_a
