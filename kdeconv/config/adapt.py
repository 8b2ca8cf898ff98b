"""Config of ``kdeconv adapt`` (example: kdeconv/configs/adapt.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kdeconv.config import Device, Precision, StrictModel
from kdeconv.config.separate import BackgroundConfig, SeparateConfig


class PureSearchConfig(StrictModel):
    """How pure patterns are found in a map's grain interiors (``kdeconv.adapt.find_pure``)."""

    min_grains: int = Field(default=4, ge=2)   # fewer grains found: refused (exit 2)
    n_max: int = Field(default=600, ge=4)      # pure patterns chosen at most
    per_grain: int = Field(default=8, ge=1)    # patterns per grain, spread over its interior
    min_distance: float = Field(default=2.0, ge=0)  # px from any boundary, mixture or scan edge
    # segments that meet as one crystal (a bent grain cut in parts) pair and hold out as one grain
    one_crystal: bool = True


class AdaptConfig(StrictModel):
    map: str                                   # the map store to adapt to (kdeconv ingest)
    out: str                                   # run folder: best.pt, last.pt, adapt.json, pairs
    # checkpoint to start from; None = the shipped adapt base (the small-pattern model for patterns
    # below kdeconv.model.SMALL_PATTERNS_BELOW px)
    base: str | None = None
    # Pure patterns: "auto" (found in the map's grain interiors) or a file of flat indices,
    # (row, col) pairs or a boolean mask image of the map.
    pure: str = "auto"
    # Pure reference patterns instead of the map's own: a folder of images (sub-folders name
    # labels, e.g. bcc/ and fcc/) or another map store. The map still gives the background.
    references: str | None = None
    reference_labels: str | None = None        # a text file of one label per reference (a store)
    search: PureSearchConfig = PureSearchConfig()

    n_pairs: int = Field(default=6000, ge=64)        # training pairs
    n_val_pairs: int = Field(default=480, ge=16)     # validation pairs, from held-out grains
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5)  # share of the grains held out
    minority: tuple[float, float] = (0.05, 0.5)      # minority weight range of the pairs
    pure_fraction: float = Field(default=0.1, ge=0, le=0.5)  # near-pure pairs (wB < 0.03)
    flips: bool = True
    # What A and B are trained towards: the mean of each pure pattern's grain ("grain_mean": the
    # same bands, the detector noise averaged out; on raw maps less the camera's fine pattern that
    # every grain shares, generate.chunk.camera_pattern), or each pattern as recorded ("own").
    # Binned 8-bit camera: both grains 53.3% -> 64.8%; held-out Zr 94.9% (see the model card).
    targets: Literal["grain_mean", "own"] = "grain_mean"
    # A mix of two recordings carries less noise than one recording of the sum (half at 50/50):
    # true tops each mix up to one recording's noise, measured on the grains' pure patterns. A
    # noisy 8-bit camera gained 5 points with it; clean maps lost 1-2 pixels (the model card).
    top_up_noise: bool = False

    minutes: float = Field(default=10.0, gt=0)       # fine-tuning budget (wall time)
    max_steps: int = Field(default=3000, ge=1)
    # peak learning rate; None: kdeconv.separate.model_choice.adapt_lr_for (6e-4; 2e-4 from the
    # small-pattern model where it already reads the map's held-out mixtures)
    lr: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=16, ge=1)
    steps_per_epoch: int = Field(default=60, ge=1)   # validate and checkpoint this often
    early_stop_patience: int = Field(default=4, ge=0)
    # The weights best.pt keeps: those at the stop (early stopping's patience past the held-out
    # loss's lowest point, or the budget's end) or those at that lowest point. The held-out loss
    # goes flat within a few hundred steps while the bands still sharpen: on 7 maps the weights at
    # the stop found both grains at minority >= 0.25 on 2.2 points more on average (-1.9 to +7.6).
    keep: Literal["at_stop", "lowest_held_out_loss"] = "at_stop"
    ema_decay: float | None = Field(default=None, gt=0, lt=1)  # weights averaged per step (train's)
    seed: int = Field(default=0, ge=0)
    device: Device = "auto"
    precision: Precision = "auto"
    threads: int | None = Field(default=None, ge=1)

    background: BackgroundConfig = BackgroundConfig()  # as separate: auto, raw or processed
    working_size: int | None = Field(default=None, ge=16, le=2048)
    overwrite: bool = False

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.minority
        if not 0 < lo < hi <= 0.5:
            raise ValueError(f"minority must satisfy 0 < low < high <= 0.5, got {list(self.minority)}")
        if self.references is not None and self.pure != "auto":
            raise ValueError("give --pure or --references, not both")
        if self.reference_labels is not None and self.references is None:
            raise ValueError("reference_labels needs references")
        return self


def settings_from_separate(config: SeparateConfig) -> dict:
    """The adapt settings that ``separate --adapt`` (and ``adapt=``) take from separate's own: the
    model adapted, where and how it runs, the working size and the background recipe, so that the
    model is fine-tuned on exactly the input it will separate."""
    return {"base": config.checkpoint, "device": config.device, "precision": config.precision,
            "working_size": config.working_size, "background": config.background.model_dump(mode="json")}
