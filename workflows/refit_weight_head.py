"""Refit a model's weight head on simulated calibration maps, read through separate's own input path.

    python workflows/refit_weight_head.py features --first-seed 2000 --maps 40 --work runs/weight_head
    python workflows/refit_weight_head.py fit --work runs/weight_head --out runs/weight_head/candidate.pt

The head of a model trained on pairs reads faint minorities low on maps (lib-v2: 0.04-0.10 at a
true 0.15): the training pairs' augmentation only imitates what ``separate`` does to a map
(static background from the map mean, dynamic removal, resampling to the working size).
``features`` simulates calibration maps (``simulate-map``: library phases but the held-out Zr,
same-phase and cross-phase maps, raw and processed, 60-144 px, a camera drawn per map), ingests
each map file with kikuchipy, puts its patterns through ``separate``'s preprocessing exactly
(``plan_model_input``, the static background from the map mean, ``preprocess_patterns``) and
stores what the weight head reads (``DualDecoderUNet.pooled``) with the true minority, one file
per map (a rerun skips maps already done). ``fit`` refits the model's own head on the maps of
120 px and up with L1, every minority bin weighted alike, pure patterns aiming at 0.005 (whole
maps held out for validation; ``kdeconv.train.weight_head``) and writes a candidate checkpoint:
the trunk and both decoders as they were, so A and B do not change, only the weights. It writes
``calibration.json`` and ``calibration.png``: median predicted minority per true bin on the held-out
maps, before and after. Two ``features`` processes with different seeds use both cores.
The candidate goes through ``workflows/check_default_model.py`` (the install gate) like any model.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Phases of the calibration maps: the training library without the held-out Zr.
PHASES = ("ni", "al", "cu", "fe_gamma", "fe_alpha", "mo", "ti_beta", "ti_alpha", "mg", "si", "nial", "ni3al")
# Two-phase maps: duplex steel, Ti-6Al-4V, and a few other boundaries.
PHASE_PAIRS = (("fe_alpha", "fe_gamma"), ("ti_alpha", "ti_beta"), ("ni", "ni3al"), ("al", "si"),
               ("cu", "ti_alpha"))
# Sizes at or near the working range, and the small ones separate upsamples to it.
SIZES = (60, 96, 120, 120, 120, 144)


def map_config(seed: int) -> dict:
    """The simulate-map config of calibration map ``seed``: phase(s), style, size and camera drawn
    from the seed (cameras span what the training augmentation does, inside the detector's range)."""
    rng = np.random.default_rng([seed, 77])
    config = {"seed": int(seed), "nav_shape": [30, 30], "n_grains": int(rng.integers(8, 16)),
              "energy": float(rng.choice([15.0, 20.0, 25.0])),
              "footprint": {"shape": "gaussian", "radius": float(rng.uniform(0.8, 1.6)),
                            "aspect_y": float(rng.uniform(1.0, 1.5)), "supersample": 6},
              "style": "processed" if rng.random() < 0.4 else "raw"}
    if rng.random() < 0.3:
        pair = PHASE_PAIRS[rng.integers(len(PHASE_PAIRS))]
        config["phases"] = [{"master": {"kind": "library", "phase": p}, "fraction": 0.5} for p in pair]
    else:
        config["phase"] = str(rng.choice(PHASES))
    size = int(rng.choice(SIZES))
    config["detector"] = {"shape": [size, size],
                          "pc": [float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.35, 0.65)),
                                 float(rng.uniform(0.45, 0.7))],
                          "sample_tilt": 70.0, "tilt": float(rng.uniform(-5, 5))}
    config["realism"] = {"dose": float(np.exp(rng.uniform(np.log(300), np.log(6000)))),
                         "signal_fraction": float(rng.uniform(0.2, 0.8)),
                         "blur_sigma": float(rng.uniform(0.0, 1.2)),
                         "read_noise": float(rng.uniform(0.0, 4.0)),
                         "background_width": float(rng.uniform(0.6, 1.2)),
                         "background_dy": float(rng.uniform(-0.1, 0.1)),
                         "background_dx": float(rng.uniform(-0.1, 0.1)),
                         "gain": float(rng.choice([0.0, 0.03])),
                         "defect_fraction": float(rng.choice([0.0, 0.0005])),
                         "bits": int(rng.choice([16, 16, 8]))}
    return config


def model_inputs(src, ckpt: dict) -> tuple[np.ndarray, np.ndarray]:
    """A map's patterns (``src``: a map store's ``patterns`` array, (ny, nx, sy, sx)) as the
    model sees them in ``separate`` (n, sy, sx), and which are not blank (n,)."""
    from kdeconv.config.separate import BackgroundConfig
    from kdeconv.model.inputs import prepare_inputs
    from kdeconv.preprocess import circular_mask, detect_masked
    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.separate.chunk import blank_frames, preprocess_patterns
    from kdeconv.separate.inputs import plan_model_input

    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "training_state")}
    background = BackgroundConfig()
    plan = plan_model_input(src, meta, background)
    raw = np.asarray(src[...]).reshape((-1,) + tuple(src.shape[-2:]))
    kept = ~blank_frames(raw)
    static_bg = None
    if plan.background["static"] != "none":
        mean = raw[kept].astype(np.float64).mean(axis=0)
        static_bg = static_background_from_mean(mean, background.static_smooth_std)
    masked = detect_masked(raw, circular_mask(raw.shape[-2:]))
    patterns = preprocess_patterns(raw, plan.background, static_bg, plan.work_shape, masked)
    inputs, _ = prepare_inputs(patterns, ckpt["normalization"])
    return inputs, kept


def one_map(seed: int, work: Path, model, ckpt: dict, client) -> dict:
    from kdeconv.config import validate_config
    from kdeconv.config.ingest import IngestConfig
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import TRUTH_NAME, simulate_map
    from kdeconv.io.ingest import ingest
    from kdeconv.io.store import open_store
    from kdeconv.train.weight_head import pooled_features

    quiet = (lambda *_: None)
    scratch = work / "scratch" / str(seed)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    config = map_config(seed)
    simulate_map(validate_config(SimulateMapConfig, config, "calibration map"), scratch / "sim", echo=quiet)
    truth = open_store(scratch / "sim" / TRUTH_NAME, "truth")
    map_file = scratch / "sim" / truth.attrs["map_file"]
    ingest(validate_config(IngestConfig, {"input": str(map_file), "output": str(scratch / "map.zarr")}),
           None, client=client, echo=quiet)
    import zarr

    inputs, kept = model_inputs(zarr.open_array(str(scratch / "map.zarr" / "patterns"), mode="r"), ckpt)
    features, w_a = pooled_features(model, inputs)
    weights = np.asarray(truth["weights"][...]).reshape(-1, 2)
    minority = np.minimum(weights[:, 0], weights[:, 1]).astype(np.float32)
    shutil.rmtree(scratch)
    return {"features": features[kept], "minority": minority[kept], "w_a": w_a[kept],
            "config": json.dumps(config)}


def features_stage(args) -> int:
    import torch
    from distributed import Client, LocalCluster

    from kdeconv.model.checkpoint import DEFAULT_CHECKPOINT, model_from_checkpoint, read_checkpoint

    torch.set_num_threads(1)  # two feature processes share the two cores
    checkpoint = Path(args.checkpoint or DEFAULT_CHECKPOINT)
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint).eval()
    out_dir = args.work / "features"
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                      silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        for seed in range(args.first_seed, args.first_seed + args.maps):
            target = out_dir / f"map_{seed}.npz"
            if target.exists() or min(map_config(seed)["detector"]["shape"]) < args.min_size:
                continue
            part = one_map(seed, args.work, model, ckpt, client)
            tmp = out_dir / f".map_{seed}.tmp.npz"
            np.savez(tmp, **part)
            tmp.replace(target)  # a map file is whole or absent
            faint = (part["minority"] >= 0.1) & (part["minority"] < 0.2)
            read = np.minimum(part["w_a"], 1 - part["w_a"])
            pure = np.median(read[part["minority"] == 0])
            print(f"map {seed}: {len(read)} patterns, pure read {pure:.3f}, "
                  f"0.1-0.2 read {np.median(read[faint]) if faint.any() else float('nan'):.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


def load_features(work: Path, min_size: int = 0) -> dict:
    """Every calibration map of ``work`` (at least ``min_size`` px), its rows concatenated."""
    files = sorted((work / "features").glob("map_*.npz"))
    if not files:
        raise SystemExit(f"Error: no calibration maps in {work / 'features'}: run the features stage first")
    parts = [dict(np.load(f)) for f in files]
    seeds = [int(f.stem.split("_")[1]) for f in files]
    configs = [json.loads(str(p["config"])) for p in parts]
    keep = [min(c["detector"]["shape"]) >= min_size for c in configs]
    parts, seeds, configs = ([x for x, k in zip(v, keep) if k] for v in (parts, seeds, configs))
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("features", "minority", "w_a")}
    out["group"] = np.concatenate([np.full(len(p["minority"]), s) for p, s in zip(parts, seeds)])
    out["configs"] = dict(zip(seeds, configs))
    return out


def calibration_report(data: dict, rows: np.ndarray, head_w_a: np.ndarray) -> dict:
    """Before/after calibration by bin on ``rows``, overall and per style and size class."""
    from kdeconv.train.weight_head import calibration_by_bin

    configs = data["configs"]
    style = np.array([configs[g]["style"] for g in data["group"]])
    size = np.array([configs[g]["detector"]["shape"][0] for g in data["group"]])
    before = np.minimum(data["w_a"], 1 - data["w_a"])
    after = np.minimum(head_w_a, 1 - head_w_a)
    groups = {"all": rows, "raw": rows & (style == "raw"), "processed": rows & (style == "processed"),
              "60-96 px (upsampled)": rows & (size < 120), "120-144 px": rows & (size >= 120)}
    return {name: {"before": calibration_by_bin(data["minority"][sel], before[sel]),
                   "after": calibration_by_bin(data["minority"][sel], after[sel])}
            for name, sel in groups.items() if sel.any()}


def calibration_figure(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names):
        for when, style in (("before", "o--"), ("after", "s-")):
            bins = report[name][when]
            ax.plot([b["true"] for b in bins.values()], [b["predicted"] for b in bins.values()], style,
                    label=when)
        ax.plot([0, 0.5], [0, 0.5], color="0.6", lw=0.8)
        ax.fill_between([0, 0.5], [-0.05, 0.45], [0.05, 0.55], color="0.9")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("true minority (bin median)")
    np.atleast_1d(axes)[0].set_ylabel("predicted minority (median)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("weight head on held-out calibration maps (grey: within 0.05)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_stage(args) -> int:
    import torch

    from kdeconv.model.checkpoint import DEFAULT_CHECKPOINT, file_sha256, read_checkpoint, update_checkpoint
    from kdeconv.train.weight_head import fit_weight_head, with_weight_head

    checkpoint = Path(args.checkpoint or DEFAULT_CHECKPOINT)
    ckpt = read_checkpoint(checkpoint)
    data = load_features(args.work, args.min_size)
    hidden = int(ckpt["model_config"].get("weight_hidden", 32))
    init = ({k.split(".", 1)[1]: v for k, v in ckpt["state_dict"].items() if k.startswith("weight_head.")}
            if args.warm_start else None)
    head_state, record = fit_weight_head(data["features"], data["minority"], hidden=hidden,
                                         groups=data["group"], epochs=args.epochs, seed=args.seed,
                                         balance=args.balance, min_minority=args.min_minority,
                                         init=init, lr=args.lr)
    head = torch.nn.Sequential(torch.nn.Linear(data["features"].shape[1], hidden), torch.nn.SiLU(),
                               torch.nn.Linear(hidden, 1))
    head.load_state_dict(head_state)
    with torch.no_grad():
        w_a = torch.sigmoid(head(torch.from_numpy(data["features"]))[:, 0]).numpy()
    held_out = np.isin(data["group"], [int(g) for g in record["groups_val"]])
    report = calibration_report(data, held_out, w_a)
    provenance = {"source_sha256": file_sha256(checkpoint)[:12], "maps": len(data["configs"]),
                  "seeds": [min(data["configs"]), max(data["configs"])], "patterns": int(len(w_a)),
                  "recipe": "workflows/refit_weight_head.py", "fit": record,
                  "held_out_calibration": report["all"]}
    update_checkpoint(checkpoint, args.out, state_dict=with_weight_head(ckpt["state_dict"], head_state),
                      weight_head_refit=provenance)
    (args.work / "calibration.json").write_text(json.dumps({"provenance": provenance, "report": report},
                                                           indent=1))
    calibration_figure(report, args.work / "calibration.png")
    for name, parts in report.items():
        for when in ("before", "after"):
            line = "  ".join(f"{b}: {v['predicted']:.3f} (true {v['true']:.3f})"
                             for b, v in parts[when].items())
            print(f"{name:22s} {when:6s} {line}")
    print(f"wrote {args.out}, {args.work / 'calibration.json'}, {args.work / 'calibration.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["features", "fit"])
    parser.add_argument("--checkpoint", default=None, help="the model to refit (default: the shipped one)")
    parser.add_argument("--work", type=Path, default=Path("runs/weight_head"))
    parser.add_argument("--first-seed", type=int, default=2000)
    parser.add_argument("--maps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None,
                        help="fit: the candidate (default: WORK/candidate.pt)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--min-size", type=int, default=120,
                        help="only calibration maps whose patterns are at least this size (px): features "
                             "skips the others, fit leaves them out; upsampled small maps pulled hcp "
                             "readings down (0.22 at a true 0.35)")
    parser.add_argument("--min-minority", type=float, default=0.005,
                        help="fit: the reading pure patterns aim at (keeps the sigmoid off its flat end)")
    parser.add_argument("--fresh", dest="warm_start", action="store_false",
                        help="fit: start from a fresh head instead of the model's own")
    parser.add_argument("--no-balance", dest="balance", action="store_false",
                        help="fit: weigh every pattern alike (maps are mostly pure: faint "
                             "minorities then read low)")
    args = parser.parse_args(argv)
    args.out = args.out or args.work / "candidate.pt"
    return features_stage(args) if args.stage == "features" else fit_stage(args)


if __name__ == "__main__":
    raise SystemExit(main())
