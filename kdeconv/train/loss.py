"""Permutation-invariant separation loss and validation metrics (pure torch kernels)."""

from __future__ import annotations

import torch

__all__ = ["per_sample_l1", "per_sample_grad_l1", "per_sample_ncc_loss", "pit_loss",
           "mixture_residual", "ncc", "order_by_truth"]


def per_sample_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().flatten(1).mean(dim=1)


def per_sample_grad_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    dx = (x.diff(dim=-1) - y.diff(dim=-1)).abs().flatten(1).mean(dim=1)
    dy = (x.diff(dim=-2) - y.diff(dim=-2)).abs().flatten(1).mean(dim=1)
    return dx + dy


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample correlation of two (n, ...) stacks, in their own dtype."""
    x = x.flatten(1)
    y = y.flatten(1)
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    return (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1)).clamp_min(1e-12)


def per_sample_ncc_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 - NCC`` per sample: blind to gain and offset, like the reported metric."""
    return 1 - _correlation(x, y)


def _pattern_term(p, t, l1: float, grad: float, ncc_: float = 0.0) -> torch.Tensor:
    out = l1 * per_sample_l1(p, t)
    if grad:
        out = out + grad * per_sample_grad_l1(p, t)
    if ncc_:
        out = out + ncc_ * per_sample_ncc_loss(p, t)
    return out


def mixture_residual(a, b, w_a, c) -> torch.Tensor:
    """Per-sample L1 between C and the best affine map of ``w_a*A + (1-w_a)*B``.

    The stored patterns are normalised one by one, so C equals the remix only up to gain and
    offset; fitting those in closed form leaves a term that needs no ground truth.
    """
    w = w_a.view(-1, *([1] * (a.dim() - 1)))
    remix = (w * a + (1 - w) * b).flatten(1)
    target = c.flatten(1)
    rm, tm = remix.mean(1, keepdim=True), target.mean(1, keepdim=True)
    rc, tc = remix - rm, target - tm
    gain = (rc * tc).sum(1, keepdim=True) / (rc * rc).sum(1, keepdim=True).clamp_min(1e-8)
    return (gain * rc - tc).abs().mean(1)


def pit_loss(pred_a, pred_b, pred_w, true_a, true_b, true_w, c=None, *, pattern_l1=1.0,
             pattern_grad=0.0, pattern_ncc=0.0, weight_l1=1.0, mixture=0.0
             ) -> tuple[torch.Tensor, dict]:
    """Loss with the better of the two assignments per sample; the weight target follows it.

    Returns ``(mean loss, parts)`` where ``parts`` holds detached per-batch means and the bool
    ``swapped`` mask (True where predicted A matched true B).
    """
    terms = (pattern_l1, pattern_grad, pattern_ncc)
    direct = _pattern_term(pred_a, true_a, *terms) + _pattern_term(pred_b, true_b, *terms)
    crossed = _pattern_term(pred_a, true_b, *terms) + _pattern_term(pred_b, true_a, *terms)
    w_direct = (pred_w - true_w).abs()
    w_crossed = (pred_w - (1 - true_w)).abs()
    # The ordering is chosen on the total: while the two outputs are still alike (early training)
    # the weight head's guess decides, so decoder A consistently takes the constituent the head
    # calls heavier, instead of a coin flip that leaves both decoders predicting the mixture.
    swapped = crossed + weight_l1 * w_crossed < direct + weight_l1 * w_direct
    sep = torch.where(swapped, crossed, direct)
    w_err = torch.where(swapped, w_crossed, w_direct)
    total = sep + weight_l1 * w_err
    parts = {"separation": sep.detach().mean(), "weight_mae": w_err.detach().mean(),
             "swapped": swapped.detach()}
    if mixture and c is not None:
        mix = mixture_residual(pred_a, pred_b, pred_w, c)
        total = total + mixture * mix
        parts["mixture"] = mix.detach().mean()
    return total.mean(), parts


def ncc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample normalised cross-correlation of two (n, ...) stacks (computed in float64)."""
    return _correlation(x.double(), y.double()).float()


def order_by_truth(pred_a, pred_b, true_a, true_b):
    """Swap predictions per sample so they line up with the truth (by summed NCC)."""
    direct = ncc(pred_a, true_a) + ncc(pred_b, true_b)
    crossed = ncc(pred_a, true_b) + ncc(pred_b, true_a)
    swap = (crossed > direct).view(-1, *([1] * (pred_a.dim() - 1)))
    return torch.where(swap, pred_b, pred_a), torch.where(swap, pred_a, pred_b), swap.flatten()
