"""Validation of a model on in-memory batches, and BatchNorm recalibration (pure torch)."""

from __future__ import annotations

import numpy as np
import torch

from kdeconv.config.train import TrainConfig
from kdeconv.train.data import Batch
from kdeconv.train.loss import ncc, order_by_truth, pit_loss

__all__ = ["to_tensors", "recalibrate_batchnorm", "evaluate_batches", "non_finite_tensors"]


def to_tensors(batch: Batch, device: torch.device):
    """``(C, A, B)`` as (b, 1, sy, sx) channels-last tensors and ``w_a`` (b,) on ``device``."""
    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x))[:, None].to(
            device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return t(batch.c), t(batch.a), t(batch.b), torch.from_numpy(batch.w_a).to(device)


def _slices(full: Batch, size: int):
    for s in range(0, len(full.c), size):
        sl = slice(s, s + size)
        yield Batch(full.c[sl], full.a[sl], full.b[sl], full.w_a[sl], full.masked[sl])


def recalibrate_batchnorm(model, batches: list[Batch], batch_size: int, device: torch.device) -> None:
    """Recompute BatchNorm running statistics for the current weights (equal-weight mean over
    ``batches``, one per store, so every pattern size counts the same).

    Running statistics lag behind weights that still move fast, and batches of one size come in
    runs; recomputing them before each evaluation and checkpoint makes eval-mode outputs (and
    the saved model) match what training sees.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for full in batches:
            for part in _slices(full, batch_size):
                c, _, _, _ = to_tensors(part, device)
                model(c)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def evaluate_batches(model, batches: list[Batch], cfg: TrainConfig, device: torch.device,
                     autocast) -> dict[str, float]:
    """Validation loss and median NCC of A and B (prediction matched to truth), weight MAE."""
    model.eval()
    losses, w_errs, ncc_a, ncc_b, sizes = [], [], [], [], []
    with torch.inference_mode():
        for full in batches:
            for part in _slices(full, cfg.val_batch_size):
                c, a, b, w = to_tensors(part, device)
                with autocast():
                    pa, pb, pw = model(c)
                pa, pb, pw = pa.float(), pb.float(), pw.float()
                loss, parts = pit_loss(pa, pb, pw, a, b, w, c, **cfg.loss.model_dump())
                losses.append(float(loss) * len(c))
                w_errs.append(float(parts["weight_mae"]) * len(c))
                sizes.append(len(c))
                oa, ob, _ = order_by_truth(pa, pb, a, b)
                ncc_a.append(ncc(oa, a).cpu().numpy())
                ncc_b.append(ncc(ob, b).cpu().numpy())
    model.train()
    n = max(1, sum(sizes))
    na, nb = np.concatenate(ncc_a), np.concatenate(ncc_b)
    return {"loss": sum(losses) / n, "weight_mae": sum(w_errs) / n,
            "ncc_a": float(np.median(na)), "ncc_b": float(np.median(nb)),
            "ncc_median": float(np.median(np.concatenate([na, nb])))}


def non_finite_tensors(model) -> list[str]:
    """Names of the parameters and floating-point buffers holding NaN or inf."""
    tensors = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers()
                                                 if b.is_floating_point()]
    return [name for name, t in tensors if not bool(torch.isfinite(t).all())]
