"""Config of ``kdeconv train`` (examples: kdeconv/configs/train.yaml, train_debug.yaml, train_finetune.yaml;
the shipped model's recipe: configs/train_default.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kdeconv.config import Device, Precision, StrictModel
from kdeconv.config.model import ENCODER_MODULES, HEAD_MODULES, UNetConfig

__all__ = ["TrainConfig", "NormalizationConfig", "LossConfig", "BUDGET_KEYS", "DEFAULT_INIT"]

# Keys that may change when a run is resumed (everything else must match the run's config).
BUDGET_KEYS = ("max_steps", "max_minutes", "early_stop_patience", "device", "precision")
# ``init_checkpoint`` value meaning the model shipped in the package (kdeconv.model.DEFAULT_CHECKPOINT).
DEFAULT_INIT = "default"


class NormalizationConfig(StrictModel):
    """Input recipe stored in the checkpoint (see kdeconv.model.inputs)."""

    method: Literal["minmax", "percentile"] = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    mask: Literal["auto", "none"] = "auto"

    @model_validator(mode="after")
    def _p(self):
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {list(self.percentiles)}")
        return self


class LossConfig(StrictModel):
    """Permutation-invariant L1 on (A, B) + weight error + optional mixture consistency."""

    pattern_l1: float = Field(default=1.0, ge=0)
    pattern_grad: float = Field(default=0.5, ge=0)  # L1 on image gradients: keeps band edges sharp
    # 1 - NCC per pattern: the reported metric; L1 alone leaves faint minority bands low-contrast
    pattern_ncc: float = Field(default=0.0, ge=0)
    weight_l1: float = Field(default=1.0, ge=0)
    mixture: float = Field(default=0.0, ge=0)  # remix(A, B, w) ~ C up to an affine map; needs no truth


class TrainConfig(StrictModel):
    seed: int = Field(default=0, ge=0)
    model: UNetConfig = UNetConfig()
    normalization: NormalizationConfig = NormalizationConfig()
    loss: LossConfig = LossConfig()

    # Fine-tuning: start from these weights ("default" = the model shipped in the package). The
    # model and normalization sections then come from that checkpoint (given ones must equal
    # it); the optimiser starts fresh. The trainer records the file's sha256; a given one must match.
    init_checkpoint: str | None = None
    init_checkpoint_sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")
    # Module-name prefixes whose parameters stay fixed, e.g. [stem, enc, down, bottleneck] (the
    # encoder); BatchNorm statistics are still recalibrated on the training data.
    freeze: list[str] = []
    head_lr_scale: float = Field(default=1.0, gt=0)  # lr multiplier of both decoders and the weight head

    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=200, ge=0)
    min_lr_ratio: float = Field(default=0.02, ge=0, le=1)  # cosine decays to lr * min_lr_ratio
    grad_clip: float | None = Field(default=1.0, gt=0)
    # Exponential moving average of the weights (decay per step), validated and saved instead of
    # the raw weights: smooths the step-to-step noise a short fine-tune stops on. None = off.
    ema_decay: float | None = Field(default=None, gt=0, lt=1)

    # Budget: the run stops at whichever comes first. Both count the whole run, across resumes;
    # the cosine schedule follows the larger of the two progress fractions.
    max_steps: int = Field(default=20000, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)

    steps_per_epoch: int | None = Field(default=None, ge=1)  # None = one pass over the train split
    val_fraction: float = Field(default=0.05, gt=0, lt=1)   # tail of each store held out
    val_max: int = Field(default=1024, ge=1)                # at most this many validation pairs in all
    # Pairs stores used whole for validation (loaded into memory), instead of holding out the tails
    # of the training stores; early stopping and best.pt follow them.
    val_data: list[str] | None = Field(default=None, min_length=1)
    val_batch_size: int = Field(default=64, ge=1)
    early_stop_patience: int = Field(default=8, ge=0)       # evaluations without improvement; 0 = off
    min_delta: float = Field(default=1e-4, ge=0)

    flips: bool = True  # random flips/transposes, identical on C, A and B
    log_every: int = Field(default=25, ge=1)  # train rows of metrics.csv
    threads: int | None = Field(default=None, ge=1)  # torch CPU threads (None = torch default)
    device: Device = "auto"
    # autocast dtype (kdeconv.model.precision): auto = bf16 on GPUs and on CPUs with native bf16
    # (AMX), fp16 + loss scaling on older GPUs, fp32 elsewhere
    precision: Precision = "auto"

    @field_validator("freeze")
    @classmethod
    def _module_names(cls, prefixes: list[str]) -> list[str]:
        known = ENCODER_MODULES + HEAD_MODULES
        for prefix in prefixes:
            if prefix.split(".")[0] not in known:
                raise ValueError(f"{prefix!r} is not under a module of the model ({', '.join(known)})")
        return prefixes
