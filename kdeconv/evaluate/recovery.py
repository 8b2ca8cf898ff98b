"""Orientation recovery: did a method find the grains that really are under the beam?

A method "claims" up to two orientations per pattern (``first``, ``second``; NaN = no claim).
Truth has ``rotation_a``/``rotation_b`` and weights; a pattern is *pure* when its minority weight
is below ``pure_below`` (then ``rotation_b`` may be NaN), and *mixed* when it is at least
``mixed_from`` (faint mixtures in between are counted but not scored).

- mixed, both: the two claims match the two truths (either ordering) within ``tol`` degrees;
- mixed, minority: some claim matches the minority constituent;
- pure, kept: some claim matches the grain; pure, invented: some claim matches nothing
  (a grain that is not there); pure ok = kept and nothing invented.

With several phases (``phase_claim_angles``) a claim matches a truth constituent only when it
was indexed as the constituent's phase and lies within tolerance with that phase's symmetry;
a claim in another phase counts as present but wrong (``PHASE_MISMATCH_DEG``).
``phase_tables`` splits the scores by phase pair (grain boundaries of one phase against phase
boundaries) and pure pixels by phase.
"""

from __future__ import annotations

import numpy as np

from kdeconv.evaluate.indexing import misorientation_deg

__all__ = ["WEIGHT_BINS", "PHASE_MISMATCH_DEG", "claim_angles", "phase_claim_angles", "recovery_table",
           "phase_tables", "pairs_recovered"]

WEIGHT_BINS = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5))

# The "misorientation" of a claim against a constituent of another phase: no symmetry relates
# them, so it is never within a tolerance, yet the claim is there (it can be an invented grain).
PHASE_MISMATCH_DEG = 180.0


def claim_angles(first, second, truth_a, truth_b, point_group) -> dict[str, np.ndarray]:
    """Misorientations (deg, NaN where undefined) of each claim against each truth constituent."""
    return {
        "first_a": misorientation_deg(first, truth_a, point_group),
        "first_b": misorientation_deg(first, truth_b, point_group),
        "second_a": misorientation_deg(second, truth_a, point_group),
        "second_b": misorientation_deg(second, truth_b, point_group),
    }


def phase_claim_angles(first, second, first_phase, second_phase, truth_a, truth_b, truth_phase_a,
                       truth_phase_b, point_groups) -> dict[str, np.ndarray]:
    """``claim_angles`` with phases: each claim and constituent carries a phase index (-1: none)
    into ``point_groups``. Same phase: the disorientation with that phase's symmetry; another
    phase: ``PHASE_MISMATCH_DEG``; NaN where the claim or the constituent is missing."""
    out = {}
    for c_name, claim, c_phase in (("first", first, first_phase), ("second", second, second_phase)):
        claim = np.asarray(claim, np.float64).reshape(-1, 4)
        c_phase = np.asarray(c_phase).reshape(-1)
        for t_name, truth, t_phase in (("a", truth_a, truth_phase_a), ("b", truth_b, truth_phase_b)):
            truth = np.asarray(truth, np.float64).reshape(-1, 4)
            t_phase = np.asarray(t_phase).reshape(-1)
            angle = np.full(len(claim), np.nan)
            present = np.isfinite(claim).all(axis=1) & np.isfinite(truth).all(axis=1)
            for k, point_group in enumerate(point_groups):
                sel = present & (c_phase == k) & (t_phase == k)
                if sel.any():
                    angle[sel] = misorientation_deg(claim[sel], truth[sel], point_group)
            angle[present & (c_phase != t_phase)] = PHASE_MISMATCH_DEG
            out[f"{c_name}_{t_name}"] = angle
    return out


def phase_tables(angles: dict[str, np.ndarray], true_weights: np.ndarray, second_claimed: np.ndarray,
                 phase_a: np.ndarray, phase_b: np.ndarray, names: list[str], tolerances=(1.0, 3.0),
                 pure_below: float = 0.05, mixed_from: float = 0.1) -> dict:
    """``recovery_table`` on parts of the map.

    ``phase_pairs``: the pixels that are not pure, by their constituents' phases ("a+b", names
    sorted); ``boundaries``: the same pixels split into ``same_phase`` (grain boundaries) and
    ``phase_boundary``; ``phases``: the pure pixels by phase.
    """
    w = np.asarray(true_weights, np.float64).reshape(-1, 2)
    pa, pb = np.asarray(phase_a).reshape(-1), np.asarray(phase_b).reshape(-1)
    pure = w.min(axis=1) < pure_below
    two = ~pure & (pa >= 0) & (pb >= 0)

    def table(sel):
        part = {k: v[sel] for k, v in angles.items()}
        return recovery_table(part, w[sel], np.asarray(second_claimed, bool).reshape(-1)[sel], tolerances,
                              pure_below, mixed_from)

    pair_key = np.array(["+".join(sorted((names[a], names[b]))) if ok else ""
                         for a, b, ok in zip(pa, pb, two)], dtype=object)
    out: dict = {"phase_pairs": {}, "boundaries": {}, "phases": {}}
    for key in sorted(set(pair_key[two])):
        out["phase_pairs"][key] = table(pair_key == key)
    for key, sel in (("same_phase", two & (pa == pb)), ("phase_boundary", two & (pa != pb))):
        if sel.any():
            out["boundaries"][key] = table(sel)
    for k, name in enumerate(names):
        sel = pure & (pa == k)
        if sel.any():
            out["phases"][name] = table(sel)
    return out


def _le(x: np.ndarray, tol: float) -> np.ndarray:
    return np.nan_to_num(x, nan=np.inf) <= tol


def _frac(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if flags.size else None


def recovery_table(angles: dict[str, np.ndarray], true_weights: np.ndarray,
                   second_claimed: np.ndarray, tolerances=(1.0, 3.0), pure_below: float = 0.05,
                   mixed_from: float = 0.1, bins=WEIGHT_BINS) -> dict:
    """Fractions of recovered patterns per tolerance, overall and per minority-weight bin.

    ``second_claimed`` says where the method claims a second grain at all (so a pure pattern whose
    second claim is absent invents nothing).
    """
    w = np.asarray(true_weights, np.float64).reshape(-1, 2)
    minority_w = w.min(axis=1)
    minority_is_a = w[:, 0] < w[:, 1]
    mixed = minority_w >= mixed_from
    pure = minority_w < pure_below
    claimed2 = np.asarray(second_claimed, bool).reshape(-1)
    out: dict = {"n_patterns": int(w.shape[0]), "n_mixed": int(mixed.sum()), "n_pure": int(pure.sum()),
                 "n_faint": int((~mixed & ~pure).sum()), "pure_below": pure_below, "mixed_from": mixed_from,
                 "tolerances_deg": {}}
    # Median misorientation of the closest claim to each truth constituent (NaN claims ignored).
    closest_a = np.fmin(angles["first_a"], np.where(claimed2, angles["second_a"], np.nan))
    closest_b = np.fmin(angles["first_b"], np.where(claimed2, angles["second_b"], np.nan))
    for key, values, sel in (("median_error_deg_a_mixed", closest_a, mixed),
                             ("median_error_deg_b_mixed", closest_b, mixed),
                             ("median_error_deg_pure", closest_a, pure)):
        v = values[sel]
        v = v[np.isfinite(v)]
        out[key] = float(np.median(v)) if v.size else None
    for tol in tolerances:
        f_a, f_b = _le(angles["first_a"], tol), _le(angles["first_b"], tol)
        s_a = _le(angles["second_a"], tol) & claimed2
        s_b = _le(angles["second_b"], tol) & claimed2
        both = (f_a & s_b) | (f_b & s_a)
        found_a, found_b = f_a | s_a, f_b | s_b
        minority = np.where(minority_is_a, found_a, found_b)
        kept = found_a
        # The first claim always counts when present; a second one only where claimed.
        first_present = np.isfinite(angles["first_a"])
        invented = (first_present & ~f_a) | (claimed2 & np.isfinite(angles["second_a"]) & ~s_a) \
            | (claimed2 & ~np.isfinite(angles["second_a"]))
        row = {
            "mixed_both": _frac(both[mixed]),
            "mixed_minority": _frac(minority[mixed]),
            "mixed_any": _frac((found_a | found_b)[mixed]),
            "pure_kept": _frac(kept[pure]),
            "pure_invented": _frac(invented[pure]),
            "pure_ok": _frac((kept & ~invented)[pure]),
            "bins": {},
        }
        for lo, hi in bins:
            sel = mixed & (minority_w >= lo) & ((minority_w < hi) if hi < 0.5 else (minority_w <= hi))
            row["bins"][f"{lo:.1f}-{hi:.1f}"] = {
                "n": int(sel.sum()), "both": _frac(both[sel]), "minority": _frac(minority[sel])}
        out["tolerances_deg"][f"{tol:g}"] = row
    return out


def pairs_recovered(first, second, truth_a, truth_b, point_group,
                    tol_deg: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern, for two claims that are both always made (a pairs store's A and B, no claim
    rule): both truths matched within ``tol_deg`` (either assignment), and at least one of them."""
    def angle(q, r):
        return np.nan_to_num(misorientation_deg(q, r, point_group), nan=180.0)

    fa, fb = angle(first, truth_a), angle(first, truth_b)
    sa, sb = angle(second, truth_a), angle(second, truth_b)
    both = np.minimum(np.maximum(fa, sb), np.maximum(fb, sa)) <= tol_deg
    one = np.minimum.reduce([fa, fb, sa, sb]) <= tol_deg
    return both, one
