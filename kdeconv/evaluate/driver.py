"""Driver of ``kdeconv evaluate``: score a separated store against a truth (or pairs) store.

Evaluation works in memory on the whole store (it is meant for simulated maps and validation
sets, thousands to tens of thousands of patterns); Hough indexing is the slow part (~200
patterns/s on 2 cores) and runs in this process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.evaluate import EvaluateConfig
from kdeconv.errors import InputError
from kdeconv.evaluate.metrics import pair_metrics, weight_error
from kdeconv.evaluate.recovery import WEIGHT_BINS, claim_angles, recovery_table, resolve_claim_rule
from kdeconv.io.store import check_array, finalize_output, jsonable, open_store, prepare_output

__all__ = ["Truth", "read_truth", "evaluate_stores", "METHODS"]

METHODS = {"kdeconv": "kdeconv (separated A, B)", "raw": "index raw C", "residual": "residual subtraction"}


@dataclass
class Truth:
    nav_shape: tuple[int, ...]
    A: np.ndarray              # (n, sy, sx)
    B: np.ndarray
    weights: np.ndarray        # (n, 2)
    rotation_a: np.ndarray | None  # (n, 4) or None when unknown
    rotation_b: np.ndarray | None
    C: np.ndarray | None
    detector: dict | None
    phase: str | None
    kind: str


def _flat(arr: np.ndarray, sig: int = 2) -> np.ndarray:
    a = np.asarray(arr)
    return a.reshape((-1,) + a.shape[a.ndim - sig:]) if sig else a.reshape(-1)


def _pairs_detector(attrs: dict) -> tuple[dict | None, str | None]:
    """A single detector from a pairs store's simulate config, when its PC and tilts are fixed
    and no flips were applied; otherwise (None, None) and indexing needs ``detector:``."""
    src = (attrs.get("config") or {}).get("source") or {}
    if src.get("kind") != "simulate":
        return None, None
    fixed = all(float(src[k][0]) == float(src[k][1]) for k in ("pc_x", "pc_y", "pc_z", "sample_tilt", "camera_tilt")
                if k in src)
    prep = (attrs.get("config") or {}).get("preprocess") or {}
    flips = ((attrs.get("config") or {}).get("augment") or {}).get("flips", False)
    # Flipped/rotated patterns no longer match their stored orientations.
    if not fixed or flips or prep.get("binning", 1) != 1 or prep.get("crop"):
        return None, None
    phase = "ni" if (src.get("master") or {}).get("kind", "nickel") == "nickel" else None
    return ({"shape": src["shape"], "pc": [src["pc_x"][0], src["pc_y"][0], src["pc_z"][0]],
             "sample_tilt": src["sample_tilt"][0], "tilt": src["camera_tilt"][0]}, phase)


def read_truth(path: str | Path) -> Truth:
    group = open_store(path)
    kind = group.attrs.get("kdeconv_kind")
    if kind not in ("truth", "pairs"):
        raise InputError(f"{path} is a '{kind}' store; --truth needs a 'truth' (simulate-map) or 'pairs' store")
    open_store(path, kind, arrays=("A", "B", "weights"))
    attrs = dict(group.attrs)
    A = np.asarray(group["A"][...])
    nav = A.shape[:-2]

    def maybe(name, sig):
        return _flat(check_array(group, name, path)[...], sig) if name in group else None

    rot_a, rot_b = maybe("rotation_a", 1), maybe("rotation_b", 1)
    if rot_a is not None and not np.isfinite(rot_a).all(axis=1).any():
        rot_a = rot_b = None  # pairs from a map store: orientations unknown
    if kind == "truth":
        detector, phase = attrs.get("detector"), (attrs.get("phase") or {}).get("name")
    else:
        detector, phase = _pairs_detector(attrs)
    return Truth(tuple(nav), _flat(A), _flat(group["B"][...]), _flat(group["weights"][...], 1),
                 rot_a, rot_b, maybe("C", 2), detector, phase, kind)


def _check_shapes(sep, truth: Truth, sep_path, truth_path) -> None:
    a_shape = tuple(sep["A"].shape)
    n_sep = int(np.prod(a_shape[:-2]))
    n_truth = truth.A.shape[0]
    if a_shape[-2:] != truth.A.shape[-2:] or n_sep != n_truth:
        raise InputError(f"shape mismatch: {sep_path} A is {list(a_shape)} but {truth_path} A is "
                         f"{list(truth.nav_shape) + list(truth.A.shape[-2:])}")
    if tuple(sep["B"].shape) != a_shape:
        raise InputError(f"shape mismatch in {sep_path}: B {list(sep['B'].shape)} vs A {list(a_shape)}")
    w_shape = tuple(sep["weights"].shape)
    if int(np.prod(w_shape)) != 2 * n_sep or w_shape[-1] != 2:
        raise InputError(f"shape mismatch in {sep_path}: weights {list(w_shape)} for {n_sep} patterns")


def _summary(values: np.ndarray, sel: np.ndarray) -> dict | None:
    v = np.asarray(values, np.float64)[sel]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p10": float(np.percentile(v, 10))}


def pixel_summary(px: dict, werr: np.ndarray, minority: np.ndarray, cfg: EvaluateConfig) -> dict:
    mixed = minority >= cfg.mixed_from
    pure = minority < cfg.pure_below
    out: dict[str, Any] = {"mixed": {"n": int(mixed.sum())}, "pure": {"n": int(pure.sum())},
                           "swapped_fraction": float(px["swapped"].mean()) if px["swapped"].size else None}
    for name in ("ncc_a", "ncc_b", "psnr_a", "psnr_b", "ssim_a", "ssim_b"):
        out["mixed"][name] = _summary(px[name], mixed)
    for name in ("ncc_a", "psnr_a", "ssim_a"):
        out["pure"][name] = _summary(px[name], pure)
    out["mixed"]["weight_error"] = _summary(werr, mixed)
    out["pure"]["weight_error"] = _summary(werr, pure)
    out["bins"] = {}
    for lo, hi in WEIGHT_BINS:
        sel = (minority >= lo) & ((minority < hi) if hi < 0.5 else (minority <= hi))
        out["bins"][f"{lo:.1f}-{hi:.1f}"] = {
            "n": int(sel.sum()), "ncc_a": _summary(px["ncc_a"], sel), "ncc_b": _summary(px["ncc_b"], sel),
            "weight_error": _summary(werr, sel)}
    return out


def _pixel_metrics_chunked(sep_a, sep_b, true_a, true_b, mask, chunk: int = 1024) -> dict:
    """pair_metrics in slices: the kernels work in float64, ~10 copies of a slice at a time."""
    parts = [pair_metrics(sep_a[i:i + chunk], sep_b[i:i + chunk], true_a[i:i + chunk], true_b[i:i + chunk], mask)
             for i in range(0, len(sep_a), chunk)]
    if not parts:
        return pair_metrics(sep_a, sep_b, true_a, true_b, mask)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _index_context(truth: Truth, cfg: EvaluateConfig):
    from kdeconv.evaluate.indexing import make_detector
    from kdeconv.evaluate.reference import load_master_pattern

    if truth.rotation_a is None:
        raise InputError("the truth store has no orientations (rotation_a): use --no-index for pixel metrics only")
    info = cfg.detector.model_dump() if cfg.detector is not None else truth.detector
    if not info:
        raise InputError("the truth store has one detector per pattern or none: give detector: in the "
                         "evaluate config, or use --no-index")
    detector = make_detector(info)
    if tuple(detector.shape) != tuple(truth.A.shape[-2:]):
        raise InputError(f"detector shape {list(detector.shape)} does not match the patterns "
                         f"{list(truth.A.shape[-2:])}")
    phase_name = truth.phase or cfg.phase
    mp, _ = load_master_pattern(phase_name)
    return detector, mp.phase, phase_name


def _recover(truth: Truth, sep_a, sep_b, sep_w, cfg: EvaluateConfig, echo) -> tuple[dict, dict]:
    """Index kdeconv's A/B and the baselines; return (recovery tables, per-pattern claims)."""
    from kdeconv.cluster import Timer, summary_line
    from kdeconv.evaluate.baselines import background_corrected, raw_baseline, residual_baseline
    from kdeconv.evaluate.indexing import index_patterns
    from kdeconv.evaluate.recovery import second_claimed

    detector, phase, phase_name = _index_context(truth, cfg)
    pg = phase.point_group
    mask = _mask(truth.A.shape[-2:], cfg)
    methods: dict[str, dict] = {}
    with Timer() as t:
        first = index_patterns(sep_a, detector, phase)
        second = index_patterns(sep_b, detector, phase)
    echo(summary_line("indexed kdeconv A and B", 2 * len(sep_a), t.seconds))
    # The dominant prediction is always a claim, the other one where its weight says so
    # (the store promises A dominant, but do not rely on it).
    b_dominant = sep_w[:, 1] > sep_w[:, 0]
    first.quaternions, second.quaternions = (
        np.where(b_dominant[:, None], second.quaternions, first.quaternions),
        np.where(b_dominant[:, None], first.quaternions, second.quaternions))
    second_cm = np.where(b_dominant, first.cm, second.cm)
    methods["kdeconv"] = {"first": first, "second": second,
                          "second_claimed": second_claimed(sep_w, second_cm, cfg.claim_weight, cfg.claim_min_cm)}
    if cfg.baselines and truth.C is not None:
        with Timer() as t:
            c_bc = background_corrected(truth.C)
            methods["raw"] = raw_baseline(c_bc, detector, phase)
            methods["residual"] = residual_baseline(c_bc, detector, phase, methods["raw"]["first"], mask=mask,
                                                    min_cm=cfg.residual_min_cm, phase_name=phase_name)
        echo(summary_line("baselines (index C, simulate, subtract, index residual)", 2 * len(c_bc), t.seconds))
    tables, claims = {}, {}
    for name, m in methods.items():
        angles = claim_angles(m["first"].quaternions, m["second"].quaternions, truth.rotation_a,
                              truth.rotation_b, pg)
        tables[name] = recovery_table(angles, truth.weights, m["second_claimed"], cfg.tolerances_deg,
                                      cfg.pure_below, cfg.mixed_from)
        tables[name]["label"] = METHODS[name]
        claims[name] = {"angles": angles, "second_claimed": m["second_claimed"]}
    return tables, claims


def _mask(shape, cfg: EvaluateConfig):
    if not cfg.mask:
        return None
    from kdeconv.preprocess.mask import circular_mask

    return circular_mask(tuple(shape))


def evaluate_stores(separated: str | Path, truth_path: str | Path, out_dir: str | Path,
                    cfg: EvaluateConfig, overwrite: bool = False, echo=print, warn=None) -> dict:
    """Write metrics.json, PNG panels and report.md to ``out_dir``; return the metrics dict."""
    from kdeconv.cluster import Timer
    from kdeconv.evaluate import report

    warn = warn or echo
    truth = read_truth(truth_path)
    sep = open_store(separated, "separated", arrays=("A", "B", "weights"))
    _check_shapes(sep, truth, separated, truth_path)
    claim_rule = resolve_claim_rule(cfg.claim_weight, cfg.claim_min_cm, sep.attrs.get("claim_rule"))
    cfg = cfg.model_copy(update={k: claim_rule[k] for k in ("claim_weight", "claim_min_cm")})
    if cfg.index:
        _index_context(truth, cfg)  # refuse a truth we cannot index before any work
    staging = prepare_output(out_dir, overwrite, inputs=(separated, truth_path))

    sep_a = _flat(sep["A"][...])
    sep_b = _flat(sep["B"][...])
    sep_w = _flat(sep["weights"][...], 1).astype(np.float64)
    warnings: list[str] = []
    if not (sep_a.any() or sep_b.any()):
        warnings.append(f"the predictions in {separated} are all zeros: nothing was separated "
                        "(every score is zero; was separate interrupted or the model untrained?)")
    if not np.isfinite(sep_w).all():
        warnings.append("predicted weights contain NaN; counted as wrong")
        sep_w = np.nan_to_num(sep_w, nan=0.0)
    for w in warnings:
        warn(f"Warning: {w}")

    mask = _mask(truth.A.shape[-2:], cfg)
    with Timer() as t_px:
        px = _pixel_metrics_chunked(sep_a, sep_b, truth.A, truth.B, mask)
        werr = weight_error(sep_w, truth.weights, px["swapped"])
    minority = truth.weights.min(axis=1)
    metrics: dict[str, Any] = {
        "separated": str(separated), "truth": str(truth_path), "truth_kind": truth.kind,
        "n_patterns": int(len(sep_a)), "nav_shape": list(truth.nav_shape),
        "pattern_shape": list(truth.A.shape[-2:]), "config": cfg.model_dump(mode="json"),
        "claim_rule": claim_rule,
        "warnings": warnings, "pixel": pixel_summary(px, werr, minority, cfg),
        "seconds": {"pixel_metrics": t_px.seconds},
    }
    claims: dict = {}
    if cfg.index:
        with Timer() as t_idx:
            metrics["recovery"], claims = _recover(truth, sep_a, sep_b, sep_w, cfg, echo)
        metrics["seconds"]["indexing"] = t_idx.seconds
    staging.mkdir()
    try:
        report.write_report(staging, metrics, truth, sep_a, sep_b, sep_w, px, claims, cfg)
        (staging / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=2))
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    finalize_output(staging, out_dir)
    echo(report.headline(metrics))
    echo(f"report: {Path(out_dir) / 'report.md'}")
    return metrics
