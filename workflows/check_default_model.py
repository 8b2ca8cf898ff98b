"""Quality of a separation model on a fresh simulated test set, and installing the default model.

    python workflows/check_default_model.py [--checkpoint runs/default/run/best.pt] [--out check.json]
    python workflows/check_default_model.py --checkpoint runs/default/run/best.pt --install \
        --check-json runs/default/check.json --run runs/default/run

The test set (configs/generate_default_test.yaml: Ni, 120x120, weights 0.25-0.75, Poisson noise,
one fixed detector; other seed and pure patterns than training) is made with `kdeconv generate`.
Reported: median NCC of A and B vs truth (best of the two orderings), median |wA error|, and the
fraction of mixtures where Hough indexing (kikuchipy) of the separated A and B recovers both true
orientations within 3 degrees; beside it the same indexing of the raw mixture and of the true
pure patterns (the ceiling). Then the demo-map gate (MAP_GATE): `make demo`'s map through ingest,
separate and evaluate with this checkpoint; --install refuses a model that fails it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kdeconv.model import install as model_install

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / "configs" / "generate_default_test.yaml"
TOL_DEG = 3.0


def make_test_set(work: Path, n: int | None, shape: tuple[int, int] = (120, 120),
                  pure: bool = False) -> Path:
    """The test store for ``shape`` (the config's, with only the pattern shape changed); ``pure``:
    every pair has wA = 1 (C is one crystal's pattern with the same realism)."""
    import yaml

    name = "test120" if shape == (120, 120) else f"test{shape[0]}x{shape[1]}"
    store = work / f"{name}{'_pure' if pure else ''}.zarr"
    if not store.exists():
        work.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load(TEST_CONFIG.read_text())
        config["source"]["shape"] = list(shape)
        if pure:
            config["weights"].update(pure_fraction=1.0, pure_low=1.0)
        cfg_path = work / f"{store.name}.yaml"
        cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [str(Path(sys.executable).parent / "kdeconv"), "generate", "--config", str(cfg_path),
               "--out", str(store)] + (["--n", str(n)] if n else [])
        subprocess.run(cmd, check=True)
    return store


def pixel_quality(sep, store: Path, count: int | None) -> dict:
    """Median NCC of A and B (best ordering) and median weight error on one test store."""
    import zarr

    from kdeconv.evaluate.metrics import pair_metrics, weight_error

    g = zarr.open_group(str(store), mode="r")
    count = count or g["C"].shape[0]
    C, A, B = (np.asarray(g[k][:count], np.float32) for k in ("C", "A", "B"))
    pa, pb, pw = sep.separate(C)
    px = pair_metrics(pa, pb, A, B)
    werr = weight_error(pw, np.asarray(g["weights"][:count]), px["swapped"])
    near_half = np.asarray(g["weights"][:count]).min(axis=1) >= 0.45
    return {"n": int(count), "median_ncc_a": float(np.median(px["ncc_a"])),
            "median_ncc_b": float(np.median(px["ncc_b"])), "median_weight_error": float(np.median(werr)),
            "median_ncc_b_minority_0.45_0.5": float(np.median(px["ncc_b"][near_half]))
            if near_half.any() else None}


def quality_by_snr(ncc_a: np.ndarray, ncc_b: np.ndarray, augment: np.ndarray,
                   columns: list[str], bins: int = 4) -> list[dict]:
    """Median NCC of A and B by quartile (``bins``) of the mixture's shot-noise SNR, dose x s^2
    (the contrast s = signal_fraction over the Poisson noise of the expected counts): where in
    the test set's realism range the targets are met, and whether noise is what limits them."""
    snr = augment[:, columns.index("dose")] * augment[:, columns.index("signal_fraction")] ** 2
    edges = np.quantile(snr, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, snr, side="right") - 1, 0, bins - 1)
    return [{"dose_x_s2": [float(edges[k]), float(edges[k + 1])], "n": int((which == k).sum()),
             "median_ncc_a": float(np.median(ncc_a[which == k])),
             "median_ncc_b": float(np.median(ncc_b[which == k]))} for k in range(bins)]


def pure_calibration(sep, store: Path, claim_weight: float, claim_min_cm: float,
                     detector=None, phase=None) -> dict:
    """What the model says of pure patterns: its predicted minority weight, how often `evaluate`
    would claim a second constituent there by weight alone, and (with ``detector``) by its rule of
    weight and indexing confidence, and how often that claim is a grain that is not there; and
    (with ``detector``) the bar for patterns without a map's grain context that keeps those
    inventions rare (``isolated_claim_weight``)."""
    import zarr

    from kdeconv.config.claim import ClaimRule, cm_bars, isolated_claim_weight
    from kdeconv.evaluate.indexing import index_patterns, misorientation_deg

    g = zarr.open_group(str(store), mode="r")
    C = np.asarray(g["C"][...], np.float32)
    pa, pb, pw = sep.separate(C)
    minority = pw[:, 1]
    out = {"n": int(len(C)), "claim_weight": claim_weight, "claim_min_cm": claim_min_cm,
           "median_predicted_minority": float(np.median(minority)),
           "p90_predicted_minority": float(np.percentile(minority, 90)),
           "claimed_by_weight_fraction": float((minority >= claim_weight).mean())}
    if detector is not None:
        ib = index_patterns(pb, detector, phase)
        # B's confidence bar as evaluate sets it for this stack (from how its A patterns index)
        cm_bar, _ = cm_bars(claim_min_cm, index_patterns(pa, detector, phase).cm)
        rule = ClaimRule(claim_weight=claim_weight, claim_min_cm=claim_min_cm)
        claimed = rule.claimed(pw, ib.cm, cm_bar=cm_bar)
        other = np.nan_to_num(misorientation_deg(ib.quaternions, np.asarray(g["rotation_a"][...]),
                                                 phase.point_group), nan=180.0) > TOL_DEG
        out.update(claimed_fraction=float(claimed.mean()), invented_fraction=float((claimed & other).mean()))
        bar, shares = isolated_claim_weight(minority, other & (np.asarray(ib.cm) >= cm_bar),
                                            claim_weight)
        out["isolated"] = {"claim_weight_isolated": bar, "invented_fraction_by_bar": shares}
    return out


OTHER_SHAPES = ((60, 60), (96, 128), (160, 160), (240, 240))

# The gate a new default model must pass on the demo map, separated and scored with the CLI
# exactly as a user would (kdeconv.model.install).
MAP_GATE = model_install.MAP_GATE


CALIBRATION_EDGES = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def weight_calibration(true_weights: np.ndarray, pred_weights: np.ndarray,
                       edges=CALIBRATION_EDGES) -> list[dict]:
    """Median predicted minority weight per bin of the true one (bins [lo, hi); the last one
    closed): how the weight head reads faint minorities and pure pixels."""
    true_min, pred_min = np.min(true_weights, axis=1), np.min(pred_weights, axis=1)
    rows = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (true_min >= lo) & ((true_min <= hi) if k == len(edges) - 2 else (true_min < hi))
        rows.append({"true_minority": [lo, hi], "n": int(sel.sum()),
                     "median_predicted": float(np.median(pred_min[sel])) if sel.any() else None})
    return rows


GATE_MAPS = {"demo_map": ROOT / "configs" / "demo_simulate_map.yaml",
             "duplex_map": ROOT / "configs" / "gate_duplex_map.yaml"}


def _kdeconv(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "kdeconv"), *args], check=True)


def gate_pattern_shape(name: str, size: int | None = None) -> list[int]:
    """The pattern shape gate map ``name`` is simulated at: its config's, or ``size`` x ``size``."""
    import yaml

    return [size, size] if size else list(yaml.safe_load(GATE_MAPS[name].read_text())["detector"]["shape"])


def separated_gate_map(checkpoint: str | None, work: Path, name: str = "demo_map",
                       seed: int | None = None, size: int | None = None, tag: str = "") -> tuple[Path, Path]:
    """Gate map ``name`` (or its recipe with another ``seed``: a validation map; with ``size``,
    simulated at ``size`` x ``size`` px), simulated and ingested once per ``work`` folder, then
    separated with ``checkpoint`` (default config), as a user would; returns the separated store
    and the truth store."""
    import yaml

    stem = name + ("" if seed is None else f"_seed{seed}") + ("" if size is None else f"_{size}px")
    sim, ingested = work / stem, work / f"{stem}.zarr"
    if not (sim / "truth.zarr").exists():
        config = GATE_MAPS[name]
        if seed is not None or size is not None:
            recipe = yaml.safe_load(GATE_MAPS[name].read_text())
            if seed is not None:
                recipe["seed"] = seed
            if size is not None:
                recipe["detector"]["shape"] = [size, size]
            config = work / f"{stem}.yaml"
            config.write_text(yaml.safe_dump(recipe, sort_keys=False))
        _kdeconv("simulate-map", "--config", str(config), "--out", str(sim), "--overwrite")
    if not ingested.exists():
        _kdeconv("ingest", str(sim / "map.up2"), str(ingested))
    separated = work / f"{stem}{tag}_separated.zarr"
    ck = ["--checkpoint", str(checkpoint)] if checkpoint else []
    _kdeconv("separate", str(ingested), "--out", str(separated), "--overwrite", *ck)
    return separated, sim / "truth.zarr"


def recovery_at_3deg(separated: Path, truth: Path, report: Path, evaluate_settings: str = "") -> dict:
    """``evaluate`` of a separated gate map (no baselines; ``evaluate_settings``: YAML lines
    added to the config, e.g. a claim weight): both-grains recovery on mixed pixels and pure pixels
    kept with nothing invented, at 3 degrees."""
    cfg = report.parent / f"{report.name}_evaluate.yaml"
    cfg.write_text((ROOT / "configs" / "demo_evaluate.yaml").read_text() + "\nbaselines: false\n"
                   + evaluate_settings)
    _kdeconv("evaluate", str(separated), "--truth", str(truth), "--out", str(report), "--config", str(cfg),
             "--overwrite")
    rec = json.loads((report / "metrics.json").read_text())["recovery"]["kdeconv"]
    at3 = rec["tolerances_deg"]["3"]
    return {"n_mixed": rec["n_mixed"], "n_pure": rec["n_pure"], "mixed_both": at3["mixed_both"],
            "mixed_both_0.1_0.2": at3["bins"]["0.1-0.2"]["both"], "pure_ok": at3["pure_ok"],
            "pure_invented": at3["pure_invented"]}


def map_quality(checkpoint: str | None, work: Path, name: str = "demo_map", size: int | None = None,
                tag: str = "") -> dict:
    """A gate map (at ``size`` px when given) through ingest, separate (default config) and
    evaluate (no baselines); both-grains recovery on mixed pixels and pure pixels kept with
    nothing invented, at 3 degrees, and whether MAP_GATE passes. ``tag`` names the outputs apart
    when several models separate the same map."""
    separated, truth = separated_gate_map(checkpoint, work, name, size=size, tag=tag)
    report = work / (name + ("" if size is None else f"_{size}px") + tag + "_report")
    result = recovery_at_3deg(separated, truth, report) | {"gate": MAP_GATE}
    scores = np.load(report / "per_pattern.npz")
    result["weight_calibration"] = weight_calibration(scores["true_weights"], scores["pred_weights"])
    result["gate_passed"] = model_install.gate_passed(result)
    return result


def check(checkpoint: str | None, work: Path, n: int | None, index: bool = True,
          other_shapes: bool = True, demo_map: bool = True, gate_size: int | None = None) -> dict:
    import zarr

    from kdeconv.config.detector import DetectorSpec
    from kdeconv.evaluate.indexing import bundled_ni_phase, index_patterns
    from kdeconv.evaluate.metrics import pair_metrics, weight_error
    from kdeconv.evaluate.recovery import pairs_recovered
    from kdeconv.model import load_separator

    store = make_test_set(work, n)
    g = zarr.open_group(str(store), mode="r")
    count = n or g["C"].shape[0]
    C, A, B = (np.asarray(g[k][:count], np.float32) for k in ("C", "A", "B"))
    W = np.asarray(g["weights"][:count])
    sep = load_separator(checkpoint, device="cpu")
    t0 = time.perf_counter()
    pa, pb, pw = sep.separate(C)
    rate = count / (time.perf_counter() - t0)
    px = pair_metrics(pa, pb, A, B)
    werr = weight_error(pw, W, px["swapped"])
    result = {
        "checkpoint": str(sep.path), "sha256": sep.sha256, "test_set": str(TEST_CONFIG.relative_to(ROOT)),
        "n": int(count), "pattern_shape": list(C.shape[1:]),
        "median_ncc_a": float(np.median(px["ncc_a"])), "median_ncc_b": float(np.median(px["ncc_b"])),
        "p10_ncc_b": float(np.percentile(px["ncc_b"], 10)),
        "median_ssim_a": float(np.median(px["ssim_a"])), "median_ssim_b": float(np.median(px["ssim_b"])),
        "median_weight_error": float(np.median(werr)), "p90_weight_error": float(np.percentile(werr, 90)),
        "separate_patterns_per_s_incl_normalisation": round(rate, 1),
        "by_snr_quartile": quality_by_snr(px["ncc_a"], px["ncc_b"], np.asarray(g["augment"][:count]),
                                          list(g.attrs["augment_columns"])),
    }
    if index:
        detector = DetectorSpec.from_attrs(g.attrs["detector"]).to_kikuchipy()
        phase = bundled_ni_phase()
        pg = phase.point_group
        rot_a, rot_b = np.asarray(g["rotation_a"][:count]), np.asarray(g["rotation_b"][:count])
        t0 = time.perf_counter()
        ia, ib = index_patterns(pa, detector, phase), index_patterns(pb, detector, phase)
        both, one = pairs_recovered(ia.quaternions, ib.quaternions, rot_a, rot_b, pg, TOL_DEG)
        ta, tb = index_patterns(A, detector, phase), index_patterns(B, detector, phase)
        t_both, _ = pairs_recovered(ta.quaternions, tb.quaternions, rot_a, rot_b, pg, TOL_DEG)
        ic = index_patterns(C, detector, phase)
        _, c_one = pairs_recovered(ic.quaternions, ic.quaternions, rot_a, rot_b, pg, TOL_DEG)
        minority = np.minimum(W[:, 0], W[:, 1])
        bins = {}
        for lo, hi in ((0.25, 0.35), (0.35, 0.45), (0.45, 0.5001)):
            sel = (minority >= lo) & (minority < hi)
            bins[f"{lo:.2f}-{min(hi, 0.5):.2f}"] = {
                "n": int(sel.sum()), "both_within_3deg": float(both[sel].mean()) if sel.any() else None}
        result.update({
            "both_orientations_within_3deg": float(both.mean()),
            "at_least_one_within_3deg": float(one.mean()),
            "by_minority_weight": bins,
            "ceiling_true_pure_both_within_3deg": float(t_both.mean()),
            "raw_mixture_one_within_3deg": float(c_one.mean()),
            "indexing_seconds": round(time.perf_counter() - t0, 1),
        })
    # Most pixels of a real map are pure: a second constituent claimed there is an invented grain.
    # The claim rule evaluate uses for this model (its own, else the fallback); install stores it.
    from kdeconv.config.claim import ClaimRule

    rule, source = ClaimRule.resolve(None, None, sep.claim_rule)
    result["claim_rule"] = rule = rule.as_dict() | {"source": source}
    result["pure_patterns"] = pure = pure_calibration(
        sep, make_test_set(work, 200, pure=True), rule["claim_weight"], rule["claim_min_cm"],
        *((detector, phase) if index else ()))
    if "isolated" in pure:  # measured here: the rule install stores carries this model's own
        rule.pop("claim_weight_isolated", None)
        rule["source"].pop("claim_weight_isolated", None)
        if pure["isolated"]["claim_weight_isolated"] is not None:
            rule["claim_weight_isolated"] = pure["isolated"]["claim_weight_isolated"]
            rule["source"]["claim_weight_isolated"] = "isolated pure patterns"
    if demo_map:
        for name in GATE_MAPS:
            result[name] = map_quality(checkpoint, work, name, size=gate_size)
        result["gate_pattern_shape"] = gate_pattern_shape("demo_map", gate_size)
        if gate_size:  # what the default gives on the same maps: a small-pattern model must not lose
            from kdeconv.model.checkpoint import DEFAULT_CHECKPOINT

            result["default_at_gate_size"] = {
                name: map_quality(str(DEFAULT_CHECKPOINT), work, name, size=gate_size, tag="_default")
                for name in GATE_MAPS}
    if other_shapes:
        # Pixel metrics only; 160 and 240 px are outside the training sizes (60-128 px).
        result["other_shapes"] = {f"{sy}x{sx}": pixel_quality(sep, make_test_set(work, 100, (sy, sx)), 100)
                                  for sy, sx in OTHER_SHAPES}
    return result


def _max_minutes(run: Path | None):
    """The run's --max-minutes, from the config.yaml that train writes into the run folder."""
    import yaml

    cfg = run / "config.yaml" if run else None
    if cfg and cfg.exists():
        return (yaml.safe_load(cfg.read_text()) or {}).get("max_minutes")
    return None


def candidate(checkpoint: str | None, work: Path, claim_weight: float | None = None,
              working_range: list[int] | None = None) -> Path:
    """A copy of ``checkpoint`` (None: the shipped default) as ``work/candidate.pt`` with this
    claim weight bar (the indexing-confidence bar is kept) and/or working range (low, high,
    preferred shorter side in px)."""
    from kdeconv.config.claim import FALLBACK_CLAIM_RULE
    from kdeconv.model import read_checkpoint
    from kdeconv.model.checkpoint import DEFAULT_CHECKPOINT, update_checkpoint

    source = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    fields = {}
    if claim_weight is not None:
        rule = read_checkpoint(source).get("claim_rule") or FALLBACK_CLAIM_RULE.as_dict()
        fields["claim_rule"] = {"claim_weight": claim_weight, "claim_min_cm": rule["claim_min_cm"]}
    if working_range is not None:
        low, high, preferred = working_range
        fields["working_range"] = {"low": low, "high": high, "preferred": preferred}
    work.mkdir(parents=True, exist_ok=True)
    return update_checkpoint(source, work / "candidate.pt", **fields)


def install(checkpoint: Path, check_json: Path | None, run: Path | None, force: bool = False,
            adapt_base: bool = False, broad_looks: bool = False, small_patterns: bool = False,
            name: str | None = None,
            training_record: Path | None = None, claim_choice: Path | None = None,
            command: str | None = None) -> None:
    """Install ``checkpoint`` as the shipped default (kdeconv.model.install), with the training
    record of ``run``; exits with the reason when the demo-map gate did not pass. ``adapt_base``:
    as the model adapt starts from instead (no gate). ``claim_choice``: the JSON of
    workflows/choose_claim_weight.py that chose the model's claim weight, kept with it.
    ``command``: the recipe that trained ``run`` (default: workflows/train_default.sh's)."""
    from kdeconv.errors import InputError

    checked = json.loads(check_json.read_text()) if check_json and check_json.exists() else {}
    summary_file = run / "summary.json" if run else None
    summary = json.loads(summary_file.read_text()) if summary_file and summary_file.exists() else {}
    record = json.loads(training_record.read_text()) if training_record else {}
    from kdeconv.model import read_checkpoint

    # a missing file is refused by the install itself, after the gate
    refit = read_checkpoint(checkpoint).get("weight_head_refit") if checkpoint.is_file() else None
    provenance = {
        "name": name,
        "training": record.get("training") or {
            k: summary.get(k) for k in ("stop_reason", "step", "epoch", "best_step", "train_seconds",
                                        "samples_per_s", "device")},
        "command": record.get("command") or command or (
            "bash workflows/train_default.sh  (generate with configs/generate_library.yaml, "
            "generate_library_60.yaml, generate_library_96x128.yaml, generate_library_160.yaml; "
            f"kdeconv train --config configs/train_library.yaml --max-minutes {_max_minutes(run)})"),
        **({"weight_head_refit": refit,
            "weight_head_command": "bash workflows/refit_weight_head.sh"} if refit else {}),
        **({"claim_weight_choice": json.loads(claim_choice.read_text()),
            "claim_weight_command": "python workflows/choose_claim_weight.py"} if claim_choice else {}),
        "limits": ("Trained on simulated pairs from the dynamical master library (12 phases; Zr held "
                   "out), 10-30 kV, 60x60 to 160x160 px, PC x 0.35-0.65, y 0.15-0.75, z 0.4-0.9, "
                   "sample tilt 60-75 deg, camera tilt +-10 deg, raw and vendor-processed looks, two "
                   "constituents. Expect it to be weaker on real detectors (adapt first), on phases "
                   "far from the library, and on triple junctions."),
    }
    try:
        if adapt_base:
            target = model_install.install_adapt_base(checkpoint, checked, provenance=provenance)
        elif broad_looks:
            target = model_install.install_broad_looks(checkpoint, checked, provenance=provenance)
        elif small_patterns:
            target = model_install.install_small_patterns(checkpoint, checked, provenance=provenance)
        else:
            target = model_install.install_default(checkpoint, checked, force=force, provenance=provenance)
    except InputError as err:
        sys.exit(str(err))
    info = json.loads(target.with_suffix(".json").read_text())
    print(f"installed {target} ({info['size_bytes'] / 1e6:.1f} MB, sha256 {info['sha256'][:12]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--work", default=str(ROOT / "runs" / "check"), help="where the test store goes")
    ap.add_argument("--n", type=int, default=None, help="test pairs (default: the config's 400)")
    ap.add_argument("--out", default=None, help="write the metrics here (JSON)")
    ap.add_argument("--no-index", action="store_true", help="skip Hough indexing (pixel metrics only)")
    ap.add_argument("--no-other-shapes", action="store_true", help="only the 120x120 test set")
    ap.add_argument("--no-demo-map", action="store_true", help="skip the demo-map gate")
    ap.add_argument("--install", action="store_true", help="copy --checkpoint into the package")
    ap.add_argument("--force", action="store_true", help="install even if the demo-map gate failed")
    ap.add_argument("--adapt-base", action="store_true",
                    help="with --install: install as the model adapt starts from (no gate)")
    ap.add_argument("--broad-looks", action="store_true",
                    help="with --install: install as the broad-looks model separate weighs against the "
                         "default on each map (the gate's bars, no regression rule)")
    ap.add_argument("--small-patterns", action="store_true",
                    help="with --install: install as the model separate runs on patterns below "
                         "kdeconv.model.SMALL_PATTERNS_BELOW px (gate bars on gate maps checked "
                         "with --gate-size below it)")
    ap.add_argument("--gate-size", type=int, default=None,
                    help="simulate the gate maps at this many px per side (default: their configs')")
    ap.add_argument("--name", default=None, help="with --install: the model's name, e.g. lib-v2")
    ap.add_argument("--check-json", default=None)
    ap.add_argument("--run", default=None, help="run folder (for summary.json)")
    ap.add_argument("--training-record", default=None,
                    help="with --install and no --run: a shipped model's JSON whose training record "
                         "and command the installed model keeps (the same weights, another rule)")
    ap.add_argument("--command", default=None,
                    help="with --install and --run: the recipe that trained the run")
    ap.add_argument("--claim-choice", default=None,
                    help="with --install: the choose_claim_weight.py JSON behind --claim-weight")
    ap.add_argument("--claim-weight", type=float, default=None,
                    help="check a copy of --checkpoint (WORK/candidate.pt) with this claim weight "
                         "(chosen on validation maps, never on the gate maps)")
    ap.add_argument("--working-range", type=int, nargs=3, default=None,
                    metavar=("LOW", "HIGH", "PREFERRED"),
                    help="check a copy of --checkpoint (WORK/candidate.pt) that runs patterns whose "
                         "shorter side is outside LOW-HIGH px at PREFERRED px")
    args = ap.parse_args()
    if args.install:
        install(Path(args.checkpoint), Path(args.check_json) if args.check_json else None,
                Path(args.run) if args.run else None, force=args.force, adapt_base=args.adapt_base,
                broad_looks=args.broad_looks, small_patterns=args.small_patterns,
                name=args.name, training_record=Path(args.training_record) if args.training_record else None,
                claim_choice=Path(args.claim_choice) if args.claim_choice else None,
                command=args.command)
        return
    if args.claim_weight is not None or args.working_range is not None:
        args.checkpoint = str(candidate(args.checkpoint, Path(args.work), args.claim_weight,
                                        args.working_range))
    result = check(args.checkpoint, Path(args.work), args.n, index=not args.no_index,
                   other_shapes=not args.no_other_shapes, demo_map=not args.no_demo_map,
                   gate_size=args.gate_size)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
