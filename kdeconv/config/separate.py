"""Config of ``kdeconv separate`` (example: ``kdeconv/configs/separate.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kdeconv.config import Device, Precision, StrictModel


class BackgroundConfig(StrictModel):
    """Background removal before the model, as kikuchipy does it."""

    # "auto": decide per map whether the patterns still carry the detector background ("raw":
    # static and dynamic removal below) or were already corrected by vendor software
    # ("processed": both skipped); kdeconv.preprocess.background.decide_background.
    mode: Literal["auto", "raw", "processed"] = "auto"
    # "map_mean": the mean pattern of the whole map (raw vendor files rarely carry one); "none": skip.
    static: Literal["map_mean", "none"] = "map_mean"
    static_operation: Literal["subtract", "divide"] = "subtract"
    # Gaussian std (px) to blur the map mean with, keeping only the smooth detector background:
    # unless a map holds very many grains its mean still shows their bands, which subtracting
    # would print into every pattern. "auto" = pattern width / 8; None = the mean as is.
    static_smooth_std: Literal["auto"] | float | None = "auto"

    @field_validator("static_smooth_std")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, float) and value <= 0:
            raise ValueError("must be positive, 'auto' or null")
        return value
    dynamic: bool = True
    dynamic_operation: Literal["subtract", "divide"] = "subtract"
    # Gaussian std in pixels; None = pattern width / 8 (kikuchipy's default).
    dynamic_std: float | None = Field(default=None, gt=0)
    # "circle": zero every pattern outside the inscribed circle before anything else, for a
    # camera that sees a round phosphor screen (dark, but not zero, beyond it) or a mask filled
    # with a constant; "auto": when a sample of the map shows such corners
    # (kdeconv.preprocess.background.decide_mask).
    mask: Literal["auto", "circle", "none"] = "auto"
    # A round screen smaller than the pattern, or off its centre: the square around it as [top,
    # left, side] in pixels. Patterns are cut to it and masked to its circle, and A and B are
    # put back in place (zero around it). None: found by mask "auto" where a sample shows one.
    screen: tuple[int, int, int] | None = None

    @model_validator(mode="after")
    def _screen_is_a_window(self):
        if self.screen is not None and self.mask == "none":
            raise ValueError("screen is a window: it needs mask 'circle' or 'auto', not 'none'")
        if self.screen is not None and (min(self.screen[:2]) < 0 or self.screen[2] < 8):
            raise ValueError("screen [top, left, side] needs top, left >= 0 and side >= 8")
        return self


class NeighbourFitConfig(StrictModel):
    """The neighbour fit near boundaries (kdeconv.separate.neighbour_fit): each pattern between
    grains explained as two nearby grains' interior means. ``neighbour_fit: false`` in YAML (or
    ``True``/``False`` anywhere) is ``enabled``."""

    enabled: bool = True
    # Scan steps within which a pixel's two grains' interiors are looked for, and how far where
    # fewer than two grains are that near (0, or at most radius: no farther). A map whose step
    # is fine against the beam's footprint has wider mixed bands: larger reaches fit them, at a
    # wider chunk halo.
    radius: int = Field(default=3, ge=1, le=16)
    far_radius: int = Field(default=6, ge=0, le=32)
    # The least share a pair may give the second grain; below it the pixel keeps the model's
    # reading (lower fits more of a grain's orientation spread and the map's noise).
    min_minority: float = Field(default=0.07, ge=0.02, le=0.45)

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value):
        return {"enabled": value} if isinstance(value, bool) else value


class SeparateConfig(StrictModel):
    checkpoint: str | None = None  # None = a model shipped in kdeconv/model/weights/ (see ``model``)
    # Which shipped model, when no checkpoint is given (kdeconv.separate.model_choice): "auto"
    # takes the pattern size's default (the small-pattern model below 96 px), separates a window of
    # the map with it and the broad-looks model and keeps the one whose B looks more like the
    # map's neighbouring patterns; a name skips the size rule and the vote.
    model: Literal["auto", "default", "broad_looks", "small_patterns"] = "auto"
    device: Device = "auto"
    # autocast dtype (kdeconv.model.precision): auto = bf16 on GPUs and on CPUs with bf16 dot
    # products (AMX or AVX512-BF16: 1.6-2x the fp32 rate at 120x120, same median NCC), else fp32
    precision: Precision = "auto"
    # Patterns per model call inside a chunk; None: the device's own (on a CPU 1 MiB of input at
    # its precision, the fastest measured; on a GPU as many as fit its memory).
    batch_size: int | None = Field(default=None, ge=1)
    # Shorter side (px) the model sees; patterns are resampled to it and A, B back to the map's
    # size. None: the model's own working range decides (patterns inside it are left alone).
    working_size: int | None = Field(default=None, ge=16, le=2048)
    background: BackgroundConfig = BackgroundConfig()
    # Minority weight from which B is separated a second time, from the residual of C after A
    # (kdeconv.model.residual_pass; averaged with the first B below 0.3, replacing it above, and
    # A then separated again from what the new B leaves): near equal weights the first B is the
    # weaker output. Costs one more model call (two from 0.3) for those patterns only. None: one pass.
    residual_pass: float | None = Field(default=0.2, ge=0.0, le=0.5)
    # How many of the most mixed patterns to draw (C, A, B) in the panel PNG; 0 = no PNGs.
    panels: int = Field(default=4, ge=0, le=16)
    # Measure the claim bar inside grains on this map's own grain interiors
    # (kdeconv.separate.claims; reads the map once more and holds 1 KB per pattern).
    in_grain_claims: bool = True
    # Near boundaries, explain each pattern as two nearby grains' interiors
    # (kdeconv.separate.neighbour_fit): B is then the second grain's interior mean and the weights
    # the fit's. Needs in_grain_claims (its grains) on a 2-D map. true/false, or its settings.
    neighbour_fit: NeighbourFitConfig = NeighbourFitConfig()

    @model_validator(mode="after")
    def _one_model(self):
        if self.checkpoint is not None and self.model != "auto":
            raise ValueError(f"give a checkpoint or a shipped model ({self.model}), not both")
        return self
