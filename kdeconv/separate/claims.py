"""The map's own claim bar inside grains (``kdeconv.config.claim``), written into a separated store.

After every chunk is separated, the map is segmented into grains from its patterns alone
(``kdeconv.adapt.find_pure.segment_map``: no indexing, phase or PC). The predicted minority of the
deep grain interiors (at least ``DEEP_PX`` from any boundary, pure by their place) sets the bar
for every pixel inside a grain (``in_grain_claim_weight``); boundary pixels keep the model's bar.
``in_grain_claims`` measures both; the store gets an ``in_grain`` mask and
``claim_weight_in_grain`` in its ``claim_rule`` attr (``write_in_grain_claims``), which
``evaluate`` applies; ``in_grain_claims`` in the attrs records how it was found. The Python API's
``Separation.in_grain`` and ``second_grain`` use the same measurement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEEP_PX", "MIN_NAV", "UNFAMILIAR_DEEP_MINORITY", "MOSTLY_MIXED_MINORITY", "InGrainClaims",
           "in_grain_claims", "write_in_grain_claims", "describe_in_grain_claims", "unfamiliar_warning",
           "mostly_mixed_warning"]

# Interior pixels at least this far (px) from any boundary or the scan edge set the bar: the
# beam's footprint around them holds one grain only.
DEEP_PX = 2.0
# Smaller maps (either side) have too few interiors to measure.
MIN_NAV = 5
IN_GRAIN = "in_grain"
# Deep interiors are pure by their place, and a model that knows the detector reads them near 0
# (0.006 on simulated Ni, 0.03 on steel). A median above this says the map's patterns are unlike
# the model's training world (kikuchipy's real Ni patterns and kinematic Ni read 0.46) and its
# second grains are not to be trusted: the map needs adapt.
UNFAMILIAR_DEEP_MINORITY = 0.15
# Without interiors to read (a stack, a line scan, a small map): most patterns of a map are pure,
# so a median predicted minority above this over at least MOSTLY_MIXED_MIN_PATTERNS patterns says
# the same, unless the patterns were chosen as double patterns (the line says so).
MOSTLY_MIXED_MINORITY = 0.3
MOSTLY_MIXED_MIN_PATTERNS = 16


@dataclass(frozen=True)
class InGrainClaims:
    """A map's pixels inside grains and the claim bar there (``bar`` None, and ``in_grain`` None,
    where the map could not give one); ``record`` is what ``kdeconv separate`` writes to its
    store's ``in_grain_claims`` attr."""

    in_grain: np.ndarray | None
    record: dict[str, Any]
    labels: np.ndarray | None = None      # the segmentation's grain per pixel (-1 outside grains)
    interior: np.ndarray | None = None    # px from the nearest boundary

    @property
    def bar(self) -> float | None:
        return self.record["bar"]


def in_grain_claims(weights, patterns, background: dict[str, Any], static_bg=None, client=None,
                    progress: bool | None = None) -> InGrainClaims:
    """Segment the map (``patterns``: its store path, or a numpy or Dask array) and measure the bar
    inside its grains from the predicted ``weights`` (``(..., 2)``, NaN on blank frames).
    ``static_bg``: the static background ``separate`` applied (None, or not finite: the map's
    mean is read again)."""
    from kdeconv.adapt.find_pure import segment_map
    from kdeconv.config.claim import IN_GRAIN_MIN_PIXELS, in_grain_claim_weight

    weights = np.asarray(weights, np.float64)
    nav = weights.shape[:-1]
    record: dict[str, Any] = {"bar": None, "deep_px": DEEP_PX}
    if len(nav) != 2 or min(nav) < MIN_NAV:
        record["why_none"] = f"needs a 2-D map of at least {MIN_NAV}x{MIN_NAV} pixels"
        return InGrainClaims(None, record)
    start = time.perf_counter()
    if static_bg is not None:
        static_bg = np.asarray(static_bg)
        if not np.isfinite(static_bg).all():
            static_bg = None  # a store's placeholder: made from the map mean instead
    seg = segment_map(patterns, background=background, static_bg=static_bg, client=client,
                      progress=progress)
    record["seconds"] = round(time.perf_counter() - start, 2)
    minority = np.min(weights, axis=-1)  # NaN on blank frames
    deep = (seg.interior >= DEEP_PX) & np.isfinite(minority)
    bar = in_grain_claim_weight(minority[deep])
    record.update(n_grains=int(seg.labels.max(initial=-1) + 1), n_in_grain=int(seg.in_grain.sum()),
                  n_deep=int(deep.sum()))
    if deep.any():
        record["deep_minority_p50_p99"] = [round(float(np.percentile(minority[deep], q)), 4)
                                           for q in (50, 99)]
        record["unfamiliar"] = record["deep_minority_p50_p99"][0] > UNFAMILIAR_DEEP_MINORITY
    if bar is None:
        record["why_none"] = f"fewer than {IN_GRAIN_MIN_PIXELS} deep grain-interior pixels"
        return InGrainClaims(None, record)
    record["bar"] = bar
    return InGrainClaims(np.asarray(seg.in_grain, bool), record, labels=np.asarray(seg.labels),
                         interior=np.asarray(seg.interior))


def write_in_grain_claims(group, patterns, background: dict[str, Any], client=None,
                          progress: bool | None = None,
                          found: InGrainClaims | None = None) -> dict[str, Any]:
    """Write ``in_grain`` and the in-grain bar into the separated ``group``: ``found`` when it was
    already measured, else ``in_grain_claims`` of the group's weights (they must be complete) and
    ``patterns``, reusing the group's static background rather than reading the map again.
    Returns the record written to ``group.attrs["in_grain_claims"]``."""
    from kdeconv.separate.driver import STATIC  # the driver imports this module

    if found is None:
        static = group[STATIC][...] if STATIC in group else None
        found = in_grain_claims(group["weights"][...], patterns, background, static_bg=static,
                                client=client, progress=progress)
    return _finish(group, dict(found.record), found.in_grain)


def _finish(group, record: dict[str, Any], in_grain: np.ndarray | None) -> dict[str, Any]:
    if IN_GRAIN in group:
        del group[IN_GRAIN]
    rule = {k: v for k, v in dict(group.attrs.get("claim_rule") or {}).items()
            if k != "claim_weight_in_grain"}
    if in_grain is not None:
        chunks = group["weights"].chunks[:-1]
        group.create_array(IN_GRAIN, shape=in_grain.shape, chunks=chunks, dtype="bool",
                           fill_value=False)[...] = in_grain
        rule["claim_weight_in_grain"] = record["bar"]
    group.attrs["claim_rule"] = rule or None
    group.attrs["in_grain_claims"] = record
    return record


def describe_in_grain_claims(record: dict[str, Any], claim_rule: dict[str, Any] | None = None) -> str:
    """One line for the log: the bar inside grains and where it came from (without grains, the
    model's bar for isolated patterns when ``claim_rule`` has one)."""
    if record.get("bar") is None:
        isolated = (claim_rule or {}).get("claim_weight_isolated")
        if isolated is not None:
            return (f"claims: the model's bar for patterns without grains, minority >= "
                    f"{float(isolated):g}, everywhere ({record.get('why_none')})")
        return f"claims inside grains: the model's bar everywhere ({record.get('why_none')})"
    p50, p99 = record["deep_minority_p50_p99"]
    return (f"claims inside grains: minority >= {record['bar']:.3f} (deep interiors of "
            f"{record['n_grains']} grains read {p50:.3f} median, {p99:.3f} p99 over "
            f"{record['n_deep']} pixels; {record['n_in_grain']} pixels inside grains; "
            f"{record['seconds']:.1f} s)")


def unfamiliar_warning(record: dict[str, Any], adapt_hint: str = "kdeconv separate MAP --out OUT --adapt"
                       ) -> str | None:
    """One ``Warning:`` line when the model reads the map's pure grain interiors as mixtures
    (``record["unfamiliar"]``), else None."""
    if not record.get("unfamiliar"):
        return None
    p50 = record["deep_minority_p50_p99"][0]
    return (f"Warning: the model reads this map's grain interiors, which are pure, as mixtures "
            f"(median minority {p50:.2f}; a detector it knows reads below {UNFAMILIAR_DEEP_MINORITY}): "
            f"its second grains here are not to be trusted. Adapt it to the map first: {adapt_hint}")


def mostly_mixed_warning(weights, adapt_hint: str = "kdeconv separate MAP --out OUT --adapt "
                                                    "(--references DIR for a stack)") -> str | None:
    """One ``Warning:`` line when most of a map's patterns read as near-equal mixtures (median
    predicted minority above ``MOSTLY_MIXED_MINORITY``; blank frames left out), else None. For
    maps without grain interiors to read; ``unfamiliar_warning`` serves the others."""
    minority = np.min(np.asarray(weights, np.float64).reshape(-1, 2), axis=-1)
    minority = minority[np.isfinite(minority)]
    if len(minority) < MOSTLY_MIXED_MIN_PATTERNS:
        return None
    p50 = float(np.median(minority))
    if p50 <= MOSTLY_MIXED_MINORITY:
        return None
    return (f"Warning: the model reads most of these {len(minority)} patterns as near-equal mixtures "
            f"(median minority {p50:.2f}). Unless they were chosen as double patterns, the model does "
            f"not know this detector: adapt it first: {adapt_hint}")
