"""Config of ``kdeconv evaluate`` (example: kdeconv/configs/evaluate.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kdeconv.config import StrictModel
from kdeconv.config.claim import NEIGHBOUR_DEG, NEIGHBOUR_MIN_CM, NEIGHBOUR_PX, ClaimMinCm, ClaimWeight
from kdeconv.config.detector import DetectorSpec


class EvaluateConfig(StrictModel):
    index: bool = True                      # orientation recovery (Hough indexing); off = pixel metrics only
    baselines: bool = True                  # index raw C, and residual subtraction (needs C in the truth)
    # The baselines' view of C: "auto" decides per map as `separate` does (kdeconv.preprocess.
    # background.decide_background): static + dynamic removal for raw maps, none for processed.
    background: Literal["auto", "raw", "processed"] = "auto"
    # Also index the true A and B (the most a separation can score with this indexer; a simulated
    # map's truth has one pattern per grain, so this costs little).
    ceiling: bool = True
    tolerances_deg: list[float] = Field(default=[1.0, 3.0], min_length=1)
    pure_below: float = Field(default=0.05, ge=0, le=0.5)   # truth minority weight below: a pure pattern
    mixed_from: float = Field(default=0.1, ge=0, le=0.5)    # truth minority weight from: a mixed pattern
    # Recovery is also reported on the mixed patterns whose minority is at least this ("strong").
    strong_from: float = Field(default=0.25, ge=0, le=0.5)
    # kdeconv claims grain B where wB >= claim_weight and B indexes with PyEBSDIndex's confidence
    # cm >= claim_min_cm. Unset (null): the rule stored with the model (its checkpoint's
    # claim_rule, copied into the separated store by `separate`), else the fallback in
    # kdeconv.config.claim (FALLBACK_CLAIM_RULE). Set here to trade recall of faint
    # minorities against grains invented on pure pixels.
    claim_weight: ClaimWeight | None = None
    claim_min_cm: ClaimMinCm | None = None
    # On a 2-D map a second grain counts only where some pixel within claim_neighbour_px scan
    # steps has it as its dominant grain (same phase, within claim_neighbour_deg): the beam's
    # footprint reaches neighbours, and a B that matches none is invented. That is B's evidence,
    # so it need only index at claim_neighbour_min_cm rather than claim_min_cm (every method,
    # the baselines too). null: off, and claim_min_cm applies (a grain below the surface or a
    # twin thinner than the step is then claimable, and so is an invented one).
    claim_neighbour_px: float | None = Field(default=NEIGHBOUR_PX, ge=1, le=20)
    claim_neighbour_deg: float = Field(default=NEIGHBOUR_DEG, gt=0, le=20)
    claim_neighbour_min_cm: ClaimMinCm = NEIGHBOUR_MIN_CM
    residual_min_cm: float = Field(default=0.4, ge=0, le=1)   # residual baseline claims a 2nd grain above
    # Score (and fit) inside the circular detector mask only; null: where the truth map was
    # exported masked (simulate-map's processed style).
    mask: bool | None = None
    # Phase to index against when the truth store does not name its phases: "ni" (kikuchipy's
    # bundled Ni) or a phase of kdeconv's library (kdeconv.simulate.library_phases()).
    phase: str = "ni"
    # Detector to index with, when the truth store does not say (or says it per pattern).
    detector: DetectorSpec | None = None
    examples: int = Field(default=6, ge=0, le=24)  # rows in the example panel

    @model_validator(mode="after")
    def _order(self):
        if self.pure_below > self.mixed_from:
            raise ValueError(f"pure_below ({self.pure_below}) must not exceed mixed_from ({self.mixed_from})")
        return self
