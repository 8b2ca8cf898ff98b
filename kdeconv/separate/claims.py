"""The map's own claim bar inside grains (``kdeconv.config.claim``), written into a separated store.

After every chunk is separated, the map is segmented into grains from its patterns alone
(``kdeconv.adapt.find_pure.segment_map``: no indexing, phase or PC). The predicted minority of the
deep grain interiors (at least ``DEEP_PX`` from any boundary, pure by their place) sets the bar
for every pixel inside a grain (``in_grain_claim_weight``); boundary pixels keep the model's bar.
The store gets an ``in_grain`` mask and ``claim_weight_in_grain`` in its ``claim_rule`` attr,
which ``evaluate`` applies; ``in_grain_claims`` in the attrs records how it was found.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["DEEP_PX", "MIN_NAV", "write_in_grain_claims", "describe_in_grain_claims"]

# Interior pixels at least this far (px) from any boundary or the scan edge set the bar: the
# beam's footprint around them holds one grain only.
DEEP_PX = 2.0
# Smaller maps (either side) have too few interiors to measure.
MIN_NAV = 5
IN_GRAIN = "in_grain"


def write_in_grain_claims(group, patterns, background: dict[str, Any], client=None,
                          progress: bool | None = None) -> dict[str, Any]:
    """Segment the map (``patterns``: its store path, or a numpy or Dask array) and write
    ``in_grain`` and the in-grain bar into the separated ``group`` (its weights must be complete;
    its static background, when it has one, is reused rather than read from the map again).
    Returns the record written to ``group.attrs["in_grain_claims"]`` (``bar`` None where the map
    could not give one)."""
    from kdeconv.adapt.find_pure import segment_map
    from kdeconv.config.claim import IN_GRAIN_MIN_PIXELS, in_grain_claim_weight
    from kdeconv.separate.driver import STATIC  # the driver imports this module

    weights = np.asarray(group["weights"][...], np.float64)
    nav = weights.shape[:-1]
    record: dict[str, Any] = {"bar": None, "deep_px": DEEP_PX}
    if len(nav) != 2 or min(nav) < MIN_NAV:
        record["why_none"] = f"needs a 2-D map of at least {MIN_NAV}x{MIN_NAV} pixels"
        return _finish(group, record, None)
    start = time.perf_counter()
    static = np.asarray(group[STATIC][...]) if STATIC in group else None
    if static is not None and not np.isfinite(static).all():
        static = None  # not written: made from the map mean instead
    seg = segment_map(patterns, background=background, static_bg=static, client=client,
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
    if bar is None:
        record["why_none"] = f"fewer than {IN_GRAIN_MIN_PIXELS} deep grain-interior pixels"
        return _finish(group, record, None)
    record["bar"] = bar
    return _finish(group, record, seg.in_grain)


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


def describe_in_grain_claims(record: dict[str, Any]) -> str:
    """One line for the log: the bar inside grains and where it came from."""
    if record.get("bar") is None:
        return f"claims inside grains: the model's bar everywhere ({record.get('why_none')})"
    p50, p99 = record["deep_minority_p50_p99"]
    return (f"claims inside grains: minority >= {record['bar']:.3f} (deep interiors of "
            f"{record['n_grains']} grains read {p50:.3f} median, {p99:.3f} p99 over "
            f"{record['n_deep']} pixels; {record['n_in_grain']} pixels inside grains; "
            f"{record['seconds']:.1f} s)")
