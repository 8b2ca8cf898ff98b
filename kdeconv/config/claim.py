"""The claim rule: when kdeconv's second constituent counts as a grain of its own.

It counts where its predicted weight and its indexing confidence (PyEBSDIndex's ``cm``) both pass.
The thresholds belong to a model, because each weight head is calibrated differently: a checkpoint
may carry its rule (written at install, or by ``adapt``), ``separate`` copies it into the separated
store, and ``evaluate`` takes it from there unless its config sets ``claim_weight`` /
``claim_min_cm`` (``ClaimRule.resolve``).

A map adds what no model knows: how its own pure patterns read. Mixed patterns lie on grain
boundaries, where the beam's footprint spans two grains; a pixel that the map's own segmentation
(``kdeconv.adapt.find_pure.segment_map``) places inside a grain is pure unless its minority stands
out from what that map's deep grain interiors read. ``separate`` measures those and writes
``claim_weight_in_grain`` (``in_grain_claim_weight``) with an ``in_grain`` mask; the bar there is
the higher of the two. On the simulated duplex steel gate map this keeps 99.8% of the shipped
model's pure pixels clean (lib-v2 with one bar of 0.02 everywhere: 91.6%) while its boundary bar
is as low as 0.003 (docs/model_card.md).

The confidence bar follows how well the map's patterns of a phase index at all. PyEBSDIndex's ``cm``
depends on the phase: on simulated 120 px maps the dominant patterns of the fcc phases and Si
index at a median cm of 0.72-0.77, of the bcc phases at 0.64-0.70 and of the hcp phases at
0.52-0.59, and a right B follows (10th percentile 0.65-0.73 fcc, 0.25-0.37 hcp) while a pure
pattern's wrong B stays low (at most 0.45-0.5 fcc, 0.25-0.29 hcp). ``claim_min_cm`` holds for a
phase that indexes at ``CM_LEVEL`` or better; one that indexes lower gets a bar lower by as much,
never below ``CM_FLOOR`` (``cm_bars``).

A pattern without that context (a stack, a line scan, a map too small to segment, or one whose
segmentation found no interiors) has nothing to protect it from a low boundary bar. A model's rule
may carry ``claim_weight_isolated`` for those (``isolated_claim_weight``: the lowest bar at which
its isolated pure check patterns get at most ``ISOLATED_MAX_INVENTED`` invented grains); where the
map gives an ``in_grain`` mask it does not apply.

The derivations live here too: ``in_grain_claim_weight`` (a map's interiors),
``isolated_claim_weight`` (a model's isolated pure patterns) and ``rule_from_held_out``
(``adapt``'s held-out pairs).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field, ValidationError

from kdeconv.config import StrictModel
from kdeconv.errors import InputError

__all__ = ["ClaimRule", "ClaimWeight", "ClaimMinCm", "FALLBACK_CLAIM_RULE", "in_grain_claim_weight",
           "cm_bars", "indexing_levels", "CM_LEVEL", "CM_FLOOR", "isolated_claim_weight",
           "rule_from_held_out", "separating_bar", "IN_GRAIN_MIN_PIXELS", "neighbour_supported",
           "has_neighbours", "NEIGHBOUR_PX", "NEIGHBOUR_DEG", "NEIGHBOUR_MIN_CM"]

# The second constituent is the minority, so its weight is at most 0.5.
ClaimWeight = Annotated[float, Field(ge=0, le=0.5)]
ClaimMinCm = Annotated[float, Field(ge=0, le=1)]


class ClaimRule(StrictModel):
    claim_weight: ClaimWeight
    claim_min_cm: ClaimMinCm
    # the bar inside grains of this map (None: the model's bar everywhere); see module doc
    claim_weight_in_grain: ClaimWeight | None = None
    # the model's bar for patterns without a map's grain context (None: claim_weight); module doc
    claim_weight_isolated: ClaimWeight | None = None

    def claimed(self, weights: np.ndarray, second_cm: np.ndarray,
                in_grain: np.ndarray | None = None, cm_bar: np.ndarray | float | None = None) -> np.ndarray:
        """Where the second constituent is claimed: its weight (the smaller of each row of
        ``weights``) reaches the bar and its pattern indexes with confidence ``second_cm`` at least
        ``cm_bar`` (per row, from ``cm_bars``; None: ``claim_min_cm``; an unindexed pattern has cm
        0). The weight bar is ``claim_weight``, and the higher ``claim_weight_in_grain`` where
        ``in_grain`` (flat, one per row) is True. Without ``in_grain`` (no grain context) it is the
        higher ``claim_weight_isolated`` where set."""
        weights = np.asarray(weights)
        bar = np.full(len(weights), float(self.claim_weight))
        if in_grain is None:
            if self.claim_weight_isolated is not None:
                bar[:] = max(float(self.claim_weight), float(self.claim_weight_isolated))
        elif self.claim_weight_in_grain is not None:
            inside = np.asarray(in_grain, bool).reshape(-1)
            bar[inside] = max(float(self.claim_weight), float(self.claim_weight_in_grain))
        min_cm = self.claim_min_cm if cm_bar is None else np.asarray(cm_bar, np.float64)
        return (weights.min(axis=1) >= bar) & (np.asarray(second_cm) >= min_cm)

    def as_dict(self) -> dict[str, float]:
        out = {"claim_weight": float(self.claim_weight), "claim_min_cm": float(self.claim_min_cm)}
        for key in ("claim_weight_in_grain", "claim_weight_isolated"):
            if getattr(self, key) is not None:
                out[key] = float(getattr(self, key))
        return out

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
        extra = {key: rule.get(key) if hasattr(rule, "get") else None
                 for key in ("claim_weight_in_grain", "claim_weight_isolated")}
        try:
            return cls(claim_weight=weight, claim_min_cm=min_cm,
                       **{key: None if value is None else float(value) for key, value in extra.items()})
        except (ValidationError, TypeError, ValueError):
            raise InputError(f"{where}: claim_rule out of range (claim_weight 0-0.5, claim_min_cm "
                             f"0-1): {weight}, {min_cm}, {extra}") from None

    @classmethod
    def resolve(cls, claim_weight: float | None, claim_min_cm: float | None,
                stored: dict | None) -> tuple[ClaimRule, dict[str, str]]:
        """The rule to use, key by key: the config's value where set, else the rule stored with the
        model (``stored``: a separated store's ``claim_rule`` attr), else ``FALLBACK_CLAIM_RULE``.
        Also returns where each value came from ("config", "model" or "fallback"); a stored
        ``claim_weight_in_grain`` (the map's, written by ``separate``) is kept ("map"), and the
        model's ``claim_weight_isolated`` unless the config sets ``claim_weight`` (a bar asked
        for is the bar)."""
        rule, source = {}, {}
        for key, value in (("claim_weight", claim_weight), ("claim_min_cm", claim_min_cm)):
            if value is not None:
                rule[key], source[key] = float(value), "config"
            elif stored and stored.get(key) is not None:
                rule[key], source[key] = float(stored[key]), "model"
            else:
                rule[key], source[key] = getattr(FALLBACK_CLAIM_RULE, key), "fallback"
        if stored and stored.get("claim_weight_in_grain") is not None:
            rule["claim_weight_in_grain"] = stored["claim_weight_in_grain"]
            source["claim_weight_in_grain"] = "map"
        if claim_weight is None and stored and stored.get("claim_weight_isolated") is not None:
            rule["claim_weight_isolated"] = stored["claim_weight_isolated"]
            source["claim_weight_isolated"] = "model"
        return cls.checked(rule, "claim rule"), source


# For models that carry no rule: fitted to ni-v4 (the first shipped model) on two simulated maps. Its head
# puts faint minorities (0.10-0.15) near 0.05, so the weight bar is low, and the cm bar drops what
# then gets through from pure pixels (their B patterns index with cm <= 0.27; true minorities with
# cm >= 0.36).
FALLBACK_CLAIM_RULE = ClaimRule(claim_weight=0.02, claim_min_cm=0.3)


# ----------------------------------------------------------------------------- derivations

# The confidence bar by phase (module doc): claim_min_cm applies as is to a phase whose patterns
# index at a median cm of CM_LEVEL or more, and is lowered by what the phase falls short of it,
# down to CM_FLOOR. On the simulated library maps a proportional bar (0.3 * level / 0.75) gave the
# same hcp claims but cost the bcc phases their pure pixels (Mo 99.6 -> 98.7%); the bcc phases
# index at 0.64-0.70 and their wrong Bs as high as the fcc ones'. A level needs
# CM_LEVEL_MIN_PATTERNS indexed patterns.
CM_LEVEL = 0.65
CM_FLOOR = 0.2
CM_LEVEL_MIN_PATTERNS = 20


def indexing_levels(first_cm: np.ndarray, first_phase: np.ndarray | None = None) -> dict[int, float]:
    """The median cm of the dominant patterns that index, per phase id (``first_phase``; None: one
    level for the whole map, under id -1); phases with fewer than ``CM_LEVEL_MIN_PATTERNS``
    indexed patterns get none."""
    cm = np.nan_to_num(np.asarray(first_cm, np.float64).reshape(-1), nan=0.0)
    phase = (np.full(cm.shape, -1) if first_phase is None
             else np.asarray(first_phase).reshape(-1).astype(np.int64))
    indexed = cm > 0
    levels = {}
    for pid in np.unique(phase[indexed]):
        values = cm[indexed & (phase == pid)]
        if values.size >= CM_LEVEL_MIN_PATTERNS:
            levels[int(pid)] = float(np.median(values))
    return levels


def cm_bars(claim_min_cm: float, first_cm: np.ndarray, first_phase: np.ndarray | None = None,
            second_phase: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, float]]:
    """The confidence bar per pattern for its second constituent, and the bar per phase id: the
    phase B indexes as (``second_phase``; None: one level for the map) sets it from that phase's
    ``indexing_levels``, ``claim_min_cm - (CM_LEVEL - level)`` within ``[CM_FLOOR,
    claim_min_cm]``; a phase without a level keeps ``claim_min_cm``."""
    levels = indexing_levels(first_cm, first_phase if second_phase is not None else None)
    floor = min(CM_FLOOR, claim_min_cm)
    by_phase = {pid: round(float(np.clip(claim_min_cm - (CM_LEVEL - level), floor, claim_min_cm)), 4)
                for pid, level in levels.items()}
    n = np.asarray(first_cm).reshape(-1).size
    phase = (np.full(n, -1) if second_phase is None
             else np.asarray(second_phase).reshape(-1).astype(np.int64))
    bars = np.full(n, float(claim_min_cm))
    for pid, bar in by_phase.items():
        bars[phase == pid] = bar
    return bars, by_phase

# The in-grain bar: the 99th percentile of the minority over a map's deep grain interiors plus
# this margin, from at least IN_GRAIN_MIN_PIXELS of them (fewer: no in-grain bar).
IN_GRAIN_QUANTILE = 99.0
IN_GRAIN_MARGIN = 0.01
IN_GRAIN_MIN_PIXELS = 50


def in_grain_claim_weight(interior_minority: np.ndarray) -> float | None:
    """The bar inside grains from the predicted minority of a map's deep interior pixels (pure
    by their place, whatever the model reads there); None when there are too few of them."""
    values = np.asarray(interior_minority, np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size < IN_GRAIN_MIN_PIXELS:
        return None
    return round(float(min(0.5, np.percentile(values, IN_GRAIN_QUANTILE) + IN_GRAIN_MARGIN)), 4)


# The isolated bar: the lowest of these at or above the model's claim_weight at which at most
# ISOLATED_MAX_INVENTED of its isolated pure check patterns get an invented grain.
ISOLATED_MAX_INVENTED = 0.005
ISOLATED_BARS = (0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1)


def isolated_claim_weight(pure_minority: np.ndarray, invented_at: np.ndarray,
                          claim_weight: float) -> tuple[float | None, dict[str, float]]:
    """A model's bar for patterns without grain context, from isolated pure patterns:
    ``pure_minority`` their predicted minority, ``invented_at`` True where their B would be a grain
    that is not there if claimed (it indexes elsewhere, with the rule's confidence). Returns the
    lowest bar of ``ISOLATED_BARS`` (none below ``claim_weight``) that keeps the invented share at
    most ``ISOLATED_MAX_INVENTED``, None when ``claim_weight`` already does, and the invented share
    at each bar tried."""
    minority = np.asarray(pure_minority, np.float64).reshape(-1)
    invented_at = np.asarray(invented_at, bool).reshape(-1)
    bars = [float(claim_weight)] + [b for b in ISOLATED_BARS if b > claim_weight]
    shares = {f"{b:g}": float(((minority >= b) & invented_at).mean()) if minority.size else 0.0
              for b in bars}
    for b in bars:
        if shares[f"{b:g}"] <= ISOLATED_MAX_INVENTED:
            return (None if b == float(claim_weight) else b), shares
    return bars[-1], shares


# How adapt's held-out pairs tell pure pairs (true minority < PURE_MAX) from faint mixtures (true
# minority in FAINT): the separating bar may let PURE_PASS of pure pairs through, since the
# indexing-confidence bar drops most of those (a pure pattern's invented B indexes with low cm).
PURE_MAX = 0.03
FAINT = (0.1, 0.2)
PURE_PASS = 0.1
HELD_OUT_MARGIN = 0.01
HELD_OUT_BOUNDS = (0.005, 0.25)


def separating_bar(true_minority: np.ndarray, pred_minority: np.ndarray) -> float | None:
    """The weight bar that best tells held-out pure pairs from faint mixtures: the one that
    maximises the share of faint mixtures kept minus the share of pure pairs let through (Youden's
    J; the middle of the best range), never one that lets more than ``PURE_PASS`` of pure pairs
    through. Without faint pairs, just above the pure pairs (their 99th percentile plus a margin);
    None without pure pairs."""
    true_minority = np.asarray(true_minority, np.float64)
    pred_minority = np.asarray(pred_minority, np.float64)
    pure = pred_minority[true_minority < PURE_MAX]
    faint = pred_minority[(true_minority >= FAINT[0]) & (true_minority < FAINT[1])]
    if not pure.size:
        return None
    if not faint.size:
        weight = float(np.percentile(pure, 99)) + HELD_OUT_MARGIN
    else:
        # a bar just above each observed value: J is constant from one value up to the next
        values = np.unique(np.concatenate([pure, faint]))
        kept = (faint[None, :] > values[:, None]).mean(axis=1)
        passed = (pure[None, :] > values[:, None]).mean(axis=1)
        j = np.where(passed <= PURE_PASS, kept - passed, -np.inf)
        first = int(np.argmax(j))
        last = first
        while last + 1 < len(values) and j[last + 1] >= j[first] - 1e-12:
            last += 1
        top = values[last + 1] if last + 1 < len(values) else values[last] + HELD_OUT_MARGIN
        weight = 0.5 * (float(values[first]) + float(top))
    return round(float(np.clip(weight, *HELD_OUT_BOUNDS)), 4)


def rule_from_held_out(true_minority: np.ndarray, pred_minority: np.ndarray,
                       base_rule: dict | None) -> dict:
    """An adapted model's claim rule, from its held-out pairs (grains it was not tuned on): the
    base model's rule, its weight bar lowered to the ``separating_bar`` of the held-out pairs where
    that is lower, never raised. Pure pixels need no higher bar: ``separate`` measures the adapted
    model on the map's own grain interiors and raises the bar inside grains (``in_grain``); a
    boundary bar raised to what held-out pure pairs read dropped faint minorities on boundaries
    (on a processed duplex map, both grains at minority 0.1-0.2 fell from 90% to 71%)."""
    base = ClaimRule.checked(base_rule or FALLBACK_CLAIM_RULE, "the base model's claim rule")
    bar = separating_bar(true_minority, pred_minority)
    weight = base.claim_weight if bar is None else min(base.claim_weight, bar)
    return {"claim_weight": round(float(weight), 4), "claim_min_cm": float(base.claim_min_cm)}


# ----------------------------------------------------------------------------- neighbours

# A second grain is the neighbour the beam's footprint reaches: on a map it is seen nearby as
# the dominant grain of some pixel, within NEIGHBOUR_PX (Euclidean, in scan steps) and
# NEIGHBOUR_DEG of that grain's orientation, in the same phase. Seen there, B need only index at
# NEIGHBOUR_MIN_CM: on the simulated library maps an invented B seldom matches a neighbour,
# while right Bs of hcp phases often index below 0.3 (module doc).
NEIGHBOUR_PX = 3.0
NEIGHBOUR_DEG = 5.0
NEIGHBOUR_MIN_CM = 0.1


def has_neighbours(nav_shape: tuple[int, ...]) -> bool:
    """A 2-D map of at least 2x2 pixels: its pixels have neighbours to ask (a stack or a line
    scan has none)."""
    return len(nav_shape) == 2 and min(nav_shape) >= 2


def neighbour_supported(second_q: np.ndarray, second_phase: np.ndarray, first_q: np.ndarray,
                        first_phase: np.ndarray, nav_shape: tuple[int, ...], point_groups,
                        radius_px: float = NEIGHBOUR_PX, tol_deg: float = NEIGHBOUR_DEG,
                        rows: np.ndarray | None = None) -> np.ndarray | None:
    """Where each pattern's second orientation (``second_q``, flat ``(n, 4)`` quaternions in
    row-major map order, NaN where unindexed) is some other pixel's first orientation within
    ``radius_px``: same phase id (an index into ``point_groups``; -1: unindexed, a None entry: a
    phase never matched) and within ``tol_deg`` with that phase's symmetry. ``rows``: only these
    are asked (the others are False). None without neighbours (``has_neighbours``)."""
    from kdeconv.evaluate.indexing import misorientation_deg

    if not has_neighbours(nav_shape):
        return None
    ny, nx = (int(v) for v in nav_shape)
    second_q = np.asarray(second_q, np.float64).reshape(-1, 4)
    first_q = np.asarray(first_q, np.float64).reshape(-1, 4)
    second_phase = np.asarray(second_phase).reshape(-1).astype(np.int64)
    first_phase = np.asarray(first_phase).reshape(-1).astype(np.int64)
    ask = np.isfinite(second_q).all(axis=1) & (second_phase >= 0)
    if rows is not None:
        ask &= np.asarray(rows, bool).reshape(-1)
    supported = np.zeros(ny * nx, bool)
    r = int(np.floor(radius_px))
    offsets = sorted(((dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                      if 0 < dy * dy + dx * dx <= radius_px ** 2), key=lambda o: o[0] ** 2 + o[1] ** 2)
    for dy, dx in offsets:
        todo = np.flatnonzero(ask & ~supported)
        if not todo.size:
            break
        y, x = np.divmod(todo, nx)
        y, x = y + dy, x + dx
        inside = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
        todo, other = todo[inside], (y * nx + x)[inside]
        for k, point_group in enumerate(point_groups):
            if point_group is None:
                continue
            sel = (second_phase[todo] == k) & (first_phase[other] == k)
            if sel.any():
                angle = misorientation_deg(second_q[todo[sel]], first_q[other[sel]], point_group)
                supported[todo[sel][np.nan_to_num(angle, nan=np.inf) <= tol_deg]] = True
    return supported
