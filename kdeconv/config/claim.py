"""The claim rule: when kdeconv's second constituent counts as a grain of its own.

It counts where its predicted weight and its indexing confidence (PyEBSDIndex's ``cm``) both pass.
The thresholds belong to a model, because each weight head is calibrated differently: a checkpoint
may carry its rule (written at install, or by ``adapt``), ``separate`` copies it into the separated
store, and ``evaluate`` takes it from there unless its config sets ``claim_weight`` /
``claim_min_cm`` (``ClaimRule.resolve``).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field, ValidationError

from kdeconv.config import StrictModel
from kdeconv.errors import InputError

__all__ = ["ClaimRule", "ClaimWeight", "ClaimMinCm", "FALLBACK_CLAIM_RULE"]

# The second constituent is the minority, so its weight is at most 0.5.
ClaimWeight = Annotated[float, Field(ge=0, le=0.5)]
ClaimMinCm = Annotated[float, Field(ge=0, le=1)]


class ClaimRule(StrictModel):
    claim_weight: ClaimWeight
    claim_min_cm: ClaimMinCm

    def claimed(self, weights: np.ndarray, second_cm: np.ndarray) -> np.ndarray:
        """Where the second constituent is claimed: its weight (the smaller of each row of
        ``weights``) is at least ``claim_weight`` and its pattern indexes with confidence
        ``second_cm`` at least ``claim_min_cm`` (an unindexed pattern has cm 0)."""
        weights = np.asarray(weights)
        return (weights.min(axis=1) >= self.claim_weight) & (np.asarray(second_cm) >= self.claim_min_cm)

    def as_dict(self) -> dict[str, float]:
        return {"claim_weight": float(self.claim_weight), "claim_min_cm": float(self.claim_min_cm)}

    @classmethod
    def checked(cls, rule: Any, where: str = "claim rule") -> ClaimRule:
        """A rule from a stored mapping (checkpoint, store attrs), or a one-line ``InputError``."""
        if isinstance(rule, ClaimRule):
            return rule
        try:
            weight, min_cm = float(rule["claim_weight"]), float(rule["claim_min_cm"])
        except (TypeError, KeyError, ValueError):
            raise InputError(f"{where}: claim_rule must hold claim_weight and claim_min_cm, "
                             f"got {rule!r}") from None
        try:
            return cls(claim_weight=weight, claim_min_cm=min_cm)
        except ValidationError:
            raise InputError(f"{where}: claim_rule out of range (claim_weight 0-0.5, claim_min_cm "
                             f"0-1): {weight}, {min_cm}") from None

    @classmethod
    def resolve(cls, claim_weight: float | None, claim_min_cm: float | None,
                stored: dict | None) -> tuple[ClaimRule, dict[str, str]]:
        """The rule to use, key by key: the config's value where set, else the rule stored with the
        model (``stored``: a separated store's ``claim_rule`` attr), else ``FALLBACK_CLAIM_RULE``.
        Also returns where each value came from ("config", "model" or "fallback")."""
        rule, source = {}, {}
        for key, value in (("claim_weight", claim_weight), ("claim_min_cm", claim_min_cm)):
            if value is not None:
                rule[key], source[key] = float(value), "config"
            elif stored and stored.get(key) is not None:
                rule[key], source[key] = float(stored[key]), "model"
            else:
                rule[key], source[key] = getattr(FALLBACK_CLAIM_RULE, key), "fallback"
        return cls.checked(rule, "claim rule"), source


# For models that carry no rule: fitted to the shipped model on two simulated maps. Its weight head
# puts faint minorities (0.10-0.15) near 0.05, so the weight bar is low, and the cm bar drops what
# then gets through from pure pixels (their B patterns index with cm <= 0.27; true minorities with
# cm >= 0.36).
FALLBACK_CLAIM_RULE = ClaimRule(claim_weight=0.02, claim_min_cm=0.3)
