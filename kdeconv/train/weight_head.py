"""Refit a model's weight head on frozen features (per-chunk kernels: numpy and torch only).

The trunk and both decoders stay as they are, so A and B of every pattern are unchanged; only the
predicted weights move. Decoder A takes the dominant constituent (the training loss orders the
pair so), so the head's target is the dominant weight, ``1 - minority``. The features are what the
head reads (``DualDecoderUNet.pooled``), computed on inputs that went through ``separate``'s own
preprocessing (``workflows/refit_weight_head.py`` makes them from simulated maps), so the head is
calibrated on what ``separate`` feeds it rather than on training pairs alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kdeconv.model.unet import DualDecoderUNet

__all__ = ["pooled_features", "fit_weight_head", "balanced_weights", "with_weight_head",
           "calibration_by_bin", "MINORITY_BINS", "BALANCE_EDGES"]

# Bins of the true minority that calibration is reported in (0 = pure).
MINORITY_BINS = ((0.0, 0.0), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5))
# Bins the fit balances (pure, then 0.1-wide from 0.05 on): lower edges of bins 1, 2, ...
BALANCE_EDGES = (1e-6, 0.05, 0.15, 0.25, 0.35, 0.45)


def pooled_features(model: DualDecoderUNet, inputs: np.ndarray, batch_size: int = 64
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised model inputs ``(n, sy, sx)`` -> the features the weight head reads ``(n, 2C)``
    and the head's own predicted dominant weight ``(n,)``, both float32 (fp32, the model's device)."""
    model = model.eval()
    device = next(model.parameters()).device
    feats, w_a = [], []
    for start in range(0, len(inputs), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size], np.float32))
        with torch.inference_mode():
            bottom, _, _ = model.encode(x[:, None].to(device))
            pooled = model.pooled(bottom)
            w_a.append(torch.sigmoid(model.weight_head(pooled))[:, 0].float().cpu().numpy())
        feats.append(pooled.float().cpu().numpy())
    width = 2 * model.cfg.widths[-1]
    if not feats:
        return np.zeros((0, width), np.float32), np.zeros(0, np.float32)
    return np.concatenate(feats), np.concatenate(w_a)


def _head(n_in: int, hidden: int) -> nn.Sequential:
    # the architecture of DualDecoderUNet.weight_head, so the refitted state loads into it
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, 1))


def fit_weight_head(features: np.ndarray, minority: np.ndarray, *, hidden: int, groups: np.ndarray,
                    val_fraction: float = 0.2, epochs: int = 150, lr: float = 1e-3,
                    weight_decay: float = 1e-4, batch_size: int = 256, seed: int = 0,
                    balance: bool = True, min_minority: float = 0.0,
                    init: dict[str, torch.Tensor] | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Fit a fresh head (``hidden`` units) to predict ``1 - minority`` from ``features`` by L1 (its
    median is the calibrated reading). ``groups`` (n,) names each row's map: whole maps are held
    out for validation (neighbouring pixels of one map are not independent), and the epoch with
    the lowest validation error is kept. ``balance`` weighs the rows so that every bin of the true
    minority (``BALANCE_EDGES``) counts alike: a map is mostly pure pixels, and where a faint
    minority's features look pure an unweighted fit reads it as pure (bin median 0 at a true 0.15).
    ``min_minority`` floors the targets (pure patterns aim at it, not at 0, so no reading is
    pushed into the sigmoid's flat end where readings no longer rank); ``init`` starts from a
    head's state instead of a fresh one. Returns the head's state dict and a record of the fit."""
    features = np.asarray(features, np.float32)
    target = 1.0 - np.maximum(np.asarray(minority, np.float32), min_minority)
    groups = np.asarray(groups)
    if len(features) != len(target) or len(features) != len(groups):
        raise ValueError("features, minority and groups must have one row per pattern")
    names = np.unique(groups)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(names)))) if len(names) > 1 else 0
    val_names = rng.permutation(names)[:n_val]
    is_val = np.isin(groups, val_names)
    if not is_val.any():  # one group: hold out a random fifth of its rows instead
        is_val = rng.random(len(features)) < val_fraction
    torch.manual_seed(seed)
    head = _head(features.shape[1], hidden)
    if init is not None:
        head.load_state_dict({k: v.float() for k, v in init.items()})
    else:
        # Start at the median target: L1 through a sigmoid learns slowly far from it.
        start = float(np.clip(np.median(target), 0.51, 0.99))
        with torch.no_grad():
            head[-1].bias.fill_(float(np.log(start / (1 - start))))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    row_weight = balanced_weights(1.0 - target) if balance else np.ones(len(target), np.float32)
    x_tr, y_tr = torch.from_numpy(features[~is_val]), torch.from_numpy(target[~is_val])
    x_va, y_va = torch.from_numpy(features[is_val]), torch.from_numpy(target[is_val])
    r_tr, r_va = torch.from_numpy(row_weight[~is_val]), torch.from_numpy(row_weight[is_val])
    generator = torch.Generator().manual_seed(seed)
    best_mae, best_epoch, best_state = float("inf"), -1, None
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(x_tr), generator=generator)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            err = (torch.sigmoid(head(x_tr[rows])[:, 0]) - y_tr[rows]).abs()
            loss = (err * r_tr[rows]).sum() / r_tr[rows].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        head.eval()
        with torch.no_grad():
            mae = ((torch.sigmoid(head(x_va)[:, 0]) - y_va).abs() * r_va).sum().item() / r_va.sum().item()
        if mae < best_mae:
            best_mae, best_epoch = mae, epoch
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    record = {"rows_train": int((~is_val).sum()), "rows_val": int(is_val.sum()),
              "groups_val": [str(g) for g in val_names], "val_mae": best_mae,
              "best_epoch": best_epoch, "epochs": epochs, "hidden": hidden, "lr": lr,
              "weight_decay": weight_decay, "seed": seed, "balance": balance,
              "min_minority": min_minority, "warm_start": init is not None}
    return best_state, record


def balanced_weights(minority: np.ndarray, edges=None) -> np.ndarray:
    """Row weights (n,) float32 that give every bin of ``minority`` the same total weight (mean 1)."""
    edges = BALANCE_EDGES if edges is None else edges
    index = np.digitize(np.asarray(minority), edges)
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    weights = 1.0 / counts[index]
    return (weights * len(weights) / weights.sum()).astype(np.float32)


def with_weight_head(state_dict: dict[str, torch.Tensor], head_state: dict[str, torch.Tensor]
                     ) -> dict[str, torch.Tensor]:
    """A copy of a model's ``state_dict`` with its weight head replaced (each tensor in the dtype
    the model file stores, e.g. fp16)."""
    out = dict(state_dict)
    for key, value in head_state.items():
        name = f"weight_head.{key}"
        if name not in out or out[name].shape != value.shape:
            raise ValueError(f"the refitted head does not fit the model ({name})")
        out[name] = value.detach().to("cpu", out[name].dtype)
    return out


def calibration_by_bin(minority: np.ndarray, predicted_minority: np.ndarray,
                       bins=MINORITY_BINS) -> dict[str, dict[str, float]]:
    """Median true and predicted minority per bin of the true minority (``"pure"`` for 0)."""
    minority = np.asarray(minority, np.float64)
    predicted = np.asarray(predicted_minority, np.float64)
    out = {}
    for lo, hi in bins:
        sel = minority == 0 if hi == 0 else (minority >= lo) & (minority < hi)
        name = "pure" if hi == 0 else f"{lo:.1f}-{hi:.1f}"
        if sel.any():
            out[name] = {"true": float(np.median(minority[sel])),
                         "predicted": float(np.median(predicted[sel])), "n": int(sel.sum())}
    return out
