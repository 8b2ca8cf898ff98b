"""Learning-rate schedule of a training run."""

from __future__ import annotations

import math

__all__ = ["WarmupCosine"]


class WarmupCosine:
    """Linear warm-up, then cosine to ``lr * min_ratio`` over the run's progress in [0, 1].

    Progress is the larger of steps/max_steps and seconds/max_seconds, so a time budget still
    ends with a low learning rate. A parameter group with ``lr_scale`` gets that multiple of the
    schedule's rate. Its state is just what it was last set to.
    """

    def __init__(self, optimizer, lr: float, warmup: int, min_ratio: float):
        self.optimizer, self.lr, self.warmup, self.min_ratio = optimizer, lr, warmup, min_ratio
        self.last_lr = 0.0
        self.last_progress = 0.0

    def set(self, step: int, progress: float) -> float:
        progress = min(1.0, max(0.0, progress))
        cos = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        lr = self.lr * cos * min(1.0, (step + 1) / max(1, self.warmup))
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.last_lr, self.last_progress = lr, progress
        return lr

    def state_dict(self) -> dict:
        return {"last_lr": self.last_lr, "last_progress": self.last_progress}

    def load_state_dict(self, state: dict) -> None:
        self.last_lr = float(state["last_lr"])
        self.last_progress = float(state["last_progress"])
