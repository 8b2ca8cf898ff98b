"""Driver of ``kdeconv evaluate``: score a separated store against a truth (or pairs) store.

Evaluation works in memory on the whole store (it is meant for simulated maps and validation
sets, thousands to tens of thousands of patterns); Hough indexing is the slow part (~200
patterns/s on 2 cores) and runs in this process.

Patterns are indexed against every phase of the truth (its ``phases`` attr: name and master
spec per phase; ``phase_a``/``phase_b`` say which phase each constituent is in), and a claim
matches a constituent only in the constituent's phase (``recovery.phase_claim_angles``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.claim import ClaimRule, cm_bars, has_neighbours, neighbour_supported
from kdeconv.config.detector import DetectorSpec
from kdeconv.config.evaluate import EvaluateConfig
from kdeconv.config.generate import GenerateConfig
from kdeconv.errors import InputError
from kdeconv.evaluate.metrics import pair_metrics, weight_calibration, weight_error
from kdeconv.evaluate.recovery import WEIGHT_BINS, phase_claim_angles, phase_tables, recovery_table
from kdeconv.io.store import check_array, finalize_output, open_store, prepare_output
from kdeconv.serialize import jsonable

__all__ = ["run", "EvaluateResult", "Truth", "read_truth", "evaluate_stores", "METHODS"]

METHODS = {"kdeconv": "kdeconv (separated A, B)", "raw": "index raw C", "residual": "residual subtraction",
           "truth": "true A, B (indexer's ceiling)"}


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
    phases: list[dict] | None  # [{"name", "master" (load_master spec), ...}] or None when unknown
    kind: str
    phase_a: np.ndarray | None = None  # (n,) index into phases, -1 where no constituent
    phase_b: np.ndarray | None = None
    style: str | None = None   # simulate-map's "raw" or "processed" (vendor-exported look)

    @property
    def phase(self) -> str | None:
        """The first phase's name (one-phase truths)."""
        return self.phases[0]["name"] if self.phases else None


def _flat(arr: np.ndarray, sig: int = 2) -> np.ndarray:
    a = np.asarray(arr)
    return a.reshape((-1,) + a.shape[a.ndim - sig:]) if sig else a.reshape(-1)


def _pairs_phases(src: dict) -> list[dict]:
    """Name and master spec of each phase of a pairs store's simulate source, in label order
    (the names ``kdeconv generate`` gives them)."""
    from pathlib import PurePath

    entries = src.get("phases") or [{"master": src.get("master") or {"kind": "nickel"}}]
    out = []
    for k, entry in enumerate(entries):
        master = entry.get("master") or {"kind": "nickel"}
        kind, phase = master.get("kind", "nickel"), master.get("phase")
        if kind == "library":
            name = str(phase)
        elif kind == "kinematic":
            name = phase["name"] if isinstance(phase, dict) else PurePath(master.get("cif") or "phase").stem
        elif kind == "emsoft":
            name = PurePath(master.get("path") or "master").stem
        else:
            name = "ni"
        if name in (p["name"] for p in out):
            name = f"{name}_{k}"
        out.append({"name": name, "master": master})
    return out


def _pairs_detector(attrs: dict):
    """The one detector of a pairs store's patterns (``attrs["detector"]``, which ``generate``
    writes when its geometry is fixed), or None."""
    if attrs.get("detector"):
        return attrs["detector"]
    try:  # a store of an earlier kdeconv: its config says whether the geometry was fixed
        detector = GenerateConfig.model_validate(attrs.get("config") or {}).pairs_detector()
    except ValueError:
        return None
    return detector.to_attrs() if detector is not None else None


def read_truth(path: str | Path) -> Truth:
    group = open_store(path)
    kind = group.attrs.get("kdeconv_kind")
    if kind not in ("truth", "pairs"):
        raise InputError(f"{path} is a '{kind}' store; --truth needs a 'truth' (simulate-map) or 'pairs' "
                         "store")
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
        detector = attrs.get("detector")
        phases = attrs.get("phases") or ([attrs["phase"]] if attrs.get("phase") else None)
    else:
        detector = _pairs_detector(attrs)
        src = (attrs.get("config") or {}).get("source") or {}
        phases = _pairs_phases(src) if src.get("kind") == "simulate" else None
        if ((attrs.get("config") or {}).get("augment") or {}).get("flips"):
            rot_a = rot_b = None  # flipped or rotated patterns no longer match their orientations
    phase_a, phase_b = maybe("phase_a", 0), maybe("phase_b", 0)
    if rot_a is not None and (phase_a is None or phase_b is None):  # one-phase truth of old
        phase_a = np.where(np.isfinite(rot_a).all(axis=1), 0, -1)
        phase_b = np.where(np.isfinite(rot_b).all(axis=1), 0, -1)
    if phase_a is not None and rot_a is not None:  # a label only where there is a constituent
        phase_a = np.where(np.isfinite(rot_a).all(axis=1), phase_a, -1)
        phase_b = np.where(np.isfinite(rot_b).all(axis=1), phase_b, -1)
    return Truth(tuple(nav), _flat(A), _flat(group["B"][...]), _flat(group["weights"][...], 1),
                 rot_a, rot_b, maybe("C", 2), detector, phases, kind,
                 None if phase_a is None else phase_a.astype(np.int16),
                 None if phase_b is None else phase_b.astype(np.int16), attrs.get("style"))


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


def _pixel_metrics_chunked(sep_a, sep_b, true_a, true_b, mask, chunk: int | None = None) -> dict:
    """pair_metrics in slices: the kernels work in float64, ~10 copies of a slice at a time."""
    from kdeconv.evaluate.metrics import slice_rows

    chunk = chunk or slice_rows(np.shape(sep_a)[-2:], 8, 64.0, 1024)
    rows = [slice(i, i + chunk) for i in range(0, len(sep_a), chunk)]
    parts = [pair_metrics(sep_a[r], sep_b[r], true_a[r], true_b[r], mask) for r in rows]
    if not parts:
        return pair_metrics(sep_a, sep_b, true_a, true_b, mask)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _index_context(truth: Truth, cfg: EvaluateConfig):
    """(detector, RefPhase list) to index with; the truth's phases, else the config's ``phase``."""
    from kdeconv.evaluate.reference import master_spec_for, reference_phases

    if truth.rotation_a is None:
        raise InputError("the truth store has no orientations (rotation_a): use --no-index for pixel "
                         "metrics only")
    if cfg.detector is not None:
        spec = cfg.detector
    elif truth.detector and "shape" in truth.detector and "pc" in truth.detector:
        spec = DetectorSpec.from_attrs(truth.detector, "the truth store's detector")
    else:
        raise InputError("the truth store has one detector per pattern or none: give detector: in the "
                         "evaluate config, or use --no-index")
    detector = spec.single().to_kikuchipy()
    if tuple(detector.shape) != tuple(truth.A.shape[-2:]):
        raise InputError(f"detector shape {list(detector.shape)} does not match the patterns "
                         f"{list(truth.A.shape[-2:])}")
    phases = truth.phases or [{"name": cfg.phase, "master": master_spec_for(cfg.phase)}]
    return detector, reference_phases(phases)


def _index_unique(patterns: np.ndarray, detector, phases):
    """``index_patterns`` on the distinct patterns only (a simulated map's truth holds one clean
    pattern per grain), spread back to every row."""
    from kdeconv.evaluate.indexing import IndexResult, index_patterns

    flat = np.ascontiguousarray(patterns).reshape(len(patterns), -1)
    rows = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    r = index_patterns(patterns[first], detector, phases)
    return IndexResult(r.quaternions[inverse], r.cm[inverse], r.nmatch[inverse], r.indexed[inverse],
                       r.phase_id[inverse])


def _recover(truth: Truth, sep_a, sep_b, sep_w, cfg: EvaluateConfig, rule: ClaimRule,
             echo, in_grain: np.ndarray | None = None, window: dict | None = None) -> tuple[dict, dict, dict]:
    """Index kdeconv's A/B, the baselines and the truth; return (recovery tables, per-pattern
    claims, notes: the baselines' background decision and the phases). ``in_grain`` (flat): the
    separated store's pixels inside grains, where the rule's in-grain bar applies to kdeconv."""
    from kdeconv.cluster import Timer, summary_line
    from kdeconv.evaluate.baselines import prepare_mixtures, raw_baseline, residual_baseline
    from kdeconv.evaluate.indexing import index_patterns

    detector, refs = _index_context(truth, cfg)
    phases = [r.phase for r in refs]
    phases_named = {k: r.name for k, r in enumerate(refs)}
    mask = _mask(truth.A.shape[-2:], cfg, truth, window)
    methods: dict[str, dict] = {}
    notes: dict[str, Any] = {"phases": [{"name": r.name, "master": r.spec, "point_group": r.point_group.name,
                                         "space_group": r.phase.space_group.number} for r in refs]}
    # The dominant prediction is always a claim, the other one where its weight says so (the
    # store promises A dominant, but do not rely on it); below the claim weight the other one
    # cannot be claimed whatever its indexing, so it is not indexed (its angles stay NaN).
    b_dominant = (sep_w[:, 1] > sep_w[:, 0])[:, None, None]
    claimable = sep_w.min(axis=1) >= rule.claim_weight
    with Timer() as t:
        first = index_patterns(np.where(b_dominant, sep_b, sep_a), detector, phases)
        second = index_patterns(np.where(b_dominant, sep_a, sep_b), detector, phases, rows=claimable)
    echo(summary_line(f"indexed kdeconv A and B ({', '.join(r.name for r in refs)})",
                      len(sep_a) + int(claimable.sum()), t.seconds))
    # On a 2-D map B's evidence is a neighbour that has it as its dominant grain (below), and B
    # need only index at claim_neighbour_min_cm; elsewhere B's confidence bar follows how well the
    # map's own dominant patterns of its phase index.
    point_groups = [r.point_group for r in refs]
    nav = tuple(truth.nav_shape)
    neighbours = cfg.claim_neighbour_px is not None and has_neighbours(nav)
    residual_cm = cfg.residual_min_cm
    if neighbours:
        cm_bar = cfg.claim_neighbour_min_cm
        residual_cm = min(residual_cm, cm_bar)
        notes["neighbour_claims"] = {"radius_px": cfg.claim_neighbour_px, "tol_deg": cfg.claim_neighbour_deg,
                                     "min_cm": cm_bar, "residual_min_cm": residual_cm}
    else:
        cm_bar, bar_by_phase = cm_bars(rule.claim_min_cm, first.cm, first.phase_id, second.phase_id)
        notes["claim_min_cm_by_phase"] = {phases_named[pid]: bar for pid, bar in bar_by_phase.items()}
    methods["kdeconv"] = {"first": first, "second": second,
                          "second_claimed": rule.claimed(sep_w, second.cm, in_grain, cm_bar)}
    if cfg.baselines and truth.C is not None:
        with Timer() as t:
            c_ready, notes["baseline_background"] = prepare_mixtures(truth.C, cfg.background)
            methods["raw"] = raw_baseline(c_ready, detector, refs)
            methods["residual"] = residual_baseline(c_ready, detector, refs, methods["raw"]["first"],
                                                    mask=mask, min_cm=residual_cm)
        echo(summary_line("baselines (index C, simulate, subtract, index residual)", 2 * len(c_ready),
                          t.seconds))
    if cfg.ceiling:
        # The true A and B through the same indexer and claim rule (with the true weights): the
        # most any separation can score with it.
        true_a = _index_unique(truth.A, detector, phases)
        true_b = _index_unique(truth.B, detector, phases)
        true_bar = cm_bar if neighbours else cm_bars(rule.claim_min_cm, true_a.cm, true_a.phase_id,
                                                     true_b.phase_id)[0]
        methods["truth"] = {"first": true_a, "second": true_b,
                            "second_claimed": rule.claimed(truth.weights, true_b.cm, cm_bar=true_bar)}
    if neighbours:  # the same evidence for every method
        for name, m in methods.items():
            claimed = np.asarray(m["second_claimed"], bool)
            seen = neighbour_supported(m["second"].quaternions, m["second"].phase_id, m["first"].quaternions,
                                       m["first"].phase_id, nav, point_groups, cfg.claim_neighbour_px,
                                       cfg.claim_neighbour_deg, rows=claimed)
            m["second_claimed"] = claimed & seen
            m["unseen_nearby"] = claimed & ~seen
            notes["neighbour_claims"][name] = {"claimed": int(m["second_claimed"].sum()),
                                               "unseen_nearby": int(m["unseen_nearby"].sum())}
    tables, claims = {}, {}
    names = [r.name for r in refs]
    for name, m in methods.items():
        angles = phase_claim_angles(m["first"].quaternions, m["second"].quaternions, m["first"].phase_id,
                                    m["second"].phase_id, truth.rotation_a, truth.rotation_b, truth.phase_a,
                                    truth.phase_b, point_groups)
        tables[name] = recovery_table(angles, truth.weights, m["second_claimed"], cfg.tolerances_deg,
                                      cfg.pure_below, cfg.mixed_from)
        tables[name].update(phase_tables(angles, truth.weights, m["second_claimed"], truth.phase_a,
                                         truth.phase_b, names, cfg.tolerances_deg, cfg.pure_below,
                                         cfg.mixed_from))
        strong = truth.weights.min(axis=1) >= max(cfg.strong_from, cfg.mixed_from)
        tables[name]["strong"] = recovery_table({k: v[strong] for k, v in angles.items()},
                                                truth.weights[strong],
                                                np.asarray(m["second_claimed"])[strong], cfg.tolerances_deg,
                                                cfg.pure_below, cfg.mixed_from)
        tables[name]["strong"]["minority_from"] = max(cfg.strong_from, cfg.mixed_from)
        tables[name]["indexed_as"] = {n: float(np.mean(m["first"].phase_id == k))
                                      for k, n in enumerate(names)}
        tables[name]["label"] = METHODS[name]
        claims[name] = {"angles": angles, "second_claimed": m["second_claimed"],
                        "second_cm": np.asarray(m["second"].cm, np.float32),
                        "unseen_nearby": m.get("unseen_nearby")}
    return tables, claims, notes


def _mask(shape, cfg: EvaluateConfig, truth: Truth | None = None, window: dict | None = None):
    """The circular detector mask to score inside: as configured, or (``mask: null``) where the
    truth map was exported masked (simulate-map's processed style) or ``separate`` masked the
    raw patterns (``window``, its background recipe with ``mask: circle``: a round screen's dark
    surround; inside the screen's own circle when it cut to one)."""
    from kdeconv.preprocess.mask import circular_mask, screen_mask, windowed

    use = cfg.mask if cfg.mask is not None else (
        windowed(window) or (truth is not None and truth.style == "processed"))
    if not use:
        return None
    return screen_mask(tuple(shape), window) if windowed(window) else circular_mask(tuple(shape))


@dataclass
class EvaluateResult:
    out: Path            # the report folder: metrics.json, report.md, PNGs, per_pattern.npz
    patterns: int
    metrics: dict        # what metrics.json holds
    seconds: float


def run(config: EvaluateConfig | dict | str | Path, *, separated: str | Path, truth: str | Path,
        out: str | Path, overwrite: bool = False, client=None, progress: bool | None = True,
        echo=print, warn=None) -> EvaluateResult:
    """Score the separated store ``separated`` against ``truth`` (a simulate-map truth store or a
    pairs store) into the report folder ``out`` (``kdeconv.evaluate``).

    ``config``: an ``EvaluateConfig``, a dict or a YAML path. Evaluation runs in this process
    (``client`` and ``progress`` are taken for a call like every stage's and not used).
    """
    import time

    from kdeconv.config import coerce_config

    start = time.perf_counter()
    metrics = evaluate_stores(separated, truth, out, coerce_config(EvaluateConfig, config),
                              overwrite=overwrite, echo=echo, warn=warn)
    return EvaluateResult(Path(out), int(metrics["n_patterns"]), metrics, time.perf_counter() - start)


def evaluate_stores(separated: str | Path, truth_path: str | Path, out_dir: str | Path,
                    cfg: EvaluateConfig, overwrite: bool = False, echo=print, warn=None) -> dict:
    """Write metrics.json, PNG panels and report.md to ``out_dir``; return the metrics dict."""
    from kdeconv.cluster import Timer
    from kdeconv.evaluate import report

    warn = warn or echo
    truth = read_truth(truth_path)
    sep = open_store(separated, "separated", arrays=("A", "B", "weights"))
    _check_shapes(sep, truth, separated, truth_path)
    rule, rule_source = ClaimRule.resolve(cfg.claim_weight, cfg.claim_min_cm, sep.attrs.get("claim_rule"))
    claim_rule = rule.as_dict() | {"source": rule_source}
    cfg = cfg.model_copy(update=rule.as_dict())  # the report and metrics.json show the rule applied
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

    window = (sep.attrs.get("preprocessing") or {}).get("background") or {}
    mask = _mask(truth.A.shape[-2:], cfg, truth, window)
    with Timer() as t_px:
        px = _pixel_metrics_chunked(sep_a, sep_b, truth.A, truth.B, mask)
        werr = weight_error(sep_w, truth.weights, px["swapped"])
    minority = truth.weights.min(axis=1)
    metrics: dict[str, Any] = {
        "separated": str(separated), "truth": str(truth_path), "truth_kind": truth.kind,
        "n_patterns": int(len(sep_a)), "nav_shape": list(truth.nav_shape),
        "pattern_shape": list(truth.A.shape[-2:]), "config": cfg.model_dump(mode="json"),
        "claim_rule": claim_rule,
        "truth_style": truth.style, "scored_inside_mask": mask is not None,
        "warnings": warnings, "pixel": pixel_summary(px, werr, minority, cfg),
        "weight_calibration": weight_calibration(truth.weights, sep_w, WEIGHT_BINS, cfg.pure_below),
        "seconds": {"pixel_metrics": t_px.seconds},
    }
    claims: dict = {}
    if cfg.index:
        with Timer() as t_idx:
            in_grain = np.asarray(sep["in_grain"][...]).reshape(-1) if "in_grain" in sep else None
            metrics["recovery"], claims, notes = _recover(truth, sep_a, sep_b, sep_w, cfg, rule, echo,
                                                          in_grain, window)
        metrics.update(notes)
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
