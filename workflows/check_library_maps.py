"""A separation model on simulated maps of every library phase, a duplex map and a held-out phase.

    python workflows/check_library_maps.py [--checkpoint CKPT] [--out runs/library_maps] \
        [--phases ni fe_alpha duplex] [--held-out zr] [--styles raw processed masked screen] \
        [--sizes 60 96 120 240 480 120x160 480x640] [--nav 30 30] [--grains 12] [--workers 2] \
        [--background auto|raw|processed] [--mask auto|circle|none] [--screen-radius R] \
        [--screen-offset DY DX]

For each map (a library phase, ``duplex`` = fe_alpha + fe_gamma half each, the held-out phase),
style (``raw``: camera counts; ``processed``: the vendor-exported look; ``masked``: the raw map
with only the circular mask applied; ``screen``: the raw map seen through a round phosphor
screen, by default wider than the inscribed circle, its corners dark but not zero;
``--screen-radius`` and ``--screen-offset`` give a smaller or off-centre one) and pattern size (made by
the simulator at that size): ``simulate-map``, ``ingest`` of the map file, ``separate`` with its
defaults (background auto unless ``--background`` says, the model's own working size) and
``evaluate``. One table, ``OUT/table.json`` and ``OUT/table.md``, one row per map:

- both grains within 3 deg on mixed pixels with minority >= 0.25, and pure pixels that keep their
  grain with none invented (the issue's figures), both grains per 0.1 weight bin;
- the weight head's median predicted minority per true-minority bin and its largest error;
- where the indexer caps the result: the true A and B through the same indexer and claim rule
  (``ceiling``), and indexing the map's own pure patterns (``index C, pure``);
- the residual-subtraction baseline, the background separate chose, and seconds per stage.

Every map of one run uses the same seed, so all phases share one grain geometry, and a raw and
a processed map hold the same recorded counts. Each stage runs in this process through kdeconv's
public functions, on one Dask cluster for the whole run. Defaults (30x30 pixels, 12 grains,
120x120 px) keep a run of ~13 phases x 2 styles near 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUPLEX = ("fe_alpha", "fe_gamma")
TOL = "3"

# The map every phase gets (the demo map's detector and camera); --map-config replaces it.
DEFAULT_MAP = {
    "seed": 0, "step": 1.0,
    "footprint": {"shape": "gaussian", "radius": 1.0, "aspect_y": 1.0, "supersample": 6},
    "min_weight": 0.05, "energy": 20.0,
    "detector": {"pc": [0.5, 0.45, 0.55], "sample_tilt": 70.0, "tilt": 0.0},
}


def map_names(phases: list[str] | None, held_out: str | None) -> list[str]:
    """The maps of a run: the given names, else every library phase, the duplex and the held-out."""
    from kdeconv.simulate import library_phases

    if phases:
        return list(dict.fromkeys(phases))
    names = library_phases() + ["duplex"]
    if held_out and held_out not in names:
        names.append(held_out)
    return names


# The `screen` style's round phosphor screen (simulate-map's realism): radius in half shorter
# sides (1 = the inscribed circle), stray light beyond it.
SCREEN_RADIUS, SCREEN_FLOOR = 1.15, 0.03


def parse_size(text: str) -> tuple[int, int]:
    """A pattern size: ``120`` (square) or ``SYxSX`` such as ``480x640`` (rows x columns)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size must be N or SYxSX, got {text!r}")
    sy, sx = (int(parts[0]),) * 2 if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    return sy, sx


def size_label(size: tuple[int, int]) -> str:
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def map_config(name: str, style: str, size: tuple[int, int], nav: tuple[int, int], grains: int,
               base: dict, screen_radius: float = SCREEN_RADIUS,
               screen_offset: tuple[float, float] = (0.0, 0.0)) -> dict:
    """simulate-map config (a dict) of one map."""
    config = json.loads(json.dumps(base))
    config.pop("phase", None), config.pop("phases", None)
    if name == "duplex":
        config["phases"] = [{"master": {"kind": "library", "phase": p}, "fraction": 0.5} for p in DUPLEX]
    else:
        config["phase"] = name
    config.update(nav_shape=list(nav), n_grains=grains,
                  style="raw" if style in ("masked", "screen") else style)
    if style == "screen":
        config["realism"] = {**config.get("realism", {}), "screen_radius": screen_radius,
                             "screen_floor": SCREEN_FLOOR, "screen_offset": list(screen_offset)}
    config["detector"] = {**config.get("detector", {}), "shape": list(size)}
    return config


def run_one(name: str, style: str, size: tuple[int, int], args, base: dict, cluster) -> dict:
    """simulate-map, ingest, separate, evaluate for one map; its row of the table."""
    from kdeconv.config import validate_config
    from kdeconv.config.evaluate import EvaluateConfig
    from kdeconv.config.ingest import IngestConfig
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.driver import evaluate_stores
    from kdeconv.evaluate.simulate_map import TRUTH_NAME, simulate_map
    from kdeconv.io.ingest import ingest
    from kdeconv.io.store import open_store
    from kdeconv.separate.driver import separate_map

    work = args.out / "runs" / f"{name}_{style}_{size_label(size)}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    quiet = (lambda *_: None)
    seconds = {}
    t = time.perf_counter()
    config = map_config(name, style, size, args.nav, args.grains, base, args.screen_radius,
                        tuple(args.screen_offset))
    sim_cfg = validate_config(SimulateMapConfig, config, name)
    simulate_map(sim_cfg, work / "sim", echo=print)
    truth = work / "sim" / TRUTH_NAME
    map_file = work / "sim" / open_store(truth, "truth").attrs["map_file"]
    seconds["simulate"] = time.perf_counter() - t

    t = time.perf_counter()
    ingest(validate_config(IngestConfig, {"input": str(map_file), "output": str(work / "map.zarr")}), cluster,
           echo=quiet)
    if style == "masked":  # the raw counts with only the circular mask applied
        import numpy as np
        import zarr

        from kdeconv.preprocess import circular_mask

        patterns = zarr.open_group(str(work / "map.zarr"), mode="r+")["patterns"]
        masked = np.asarray(patterns[...]) * circular_mask(patterns.shape[-2:])
        patterns[...] = masked.astype(patterns.dtype)
    seconds["ingest"] = time.perf_counter() - t

    t = time.perf_counter()
    sep_cfg = validate_config(SeparateConfig, {"checkpoint": args.checkpoint, "panels": 0,
                                               "background": {"mode": args.background,
                                                              "mask": args.mask}}, "separate")
    result = separate_map(work / "map.zarr", work / "separated.zarr", sep_cfg, cluster, echo=quiet,
                          progress=False)
    seconds["separate"] = time.perf_counter() - t

    t = time.perf_counter()
    ev_cfg = validate_config(EvaluateConfig, {"baselines": args.baselines, "examples": 4}, "evaluate")
    metrics = evaluate_stores(work / "separated.zarr", truth, work / "report", ev_cfg, echo=quiet)
    seconds["evaluate"] = time.perf_counter() - t
    if not args.keep:
        for store in ("map.zarr", "separated.zarr"):
            shutil.rmtree(work / store, ignore_errors=True)
    return table_row(name, style, size, metrics, result, seconds, work)


def _tol(table: dict | None, key: str, part: str | None = None):
    if not table:
        return None
    if part is not None:
        table = table.get(part) or {}
    return ((table.get("tolerances_deg") or {}).get(TOL) or {}).get(key)


def table_row(name: str, style: str, size: tuple[int, int], metrics: dict, result, seconds: dict,
              work: Path) -> dict:
    rec = metrics["recovery"]
    k, truth, raw, residual = rec["kdeconv"], rec.get("truth"), rec.get("raw"), rec.get("residual")
    bins = k["tolerances_deg"][TOL]["bins"]
    cal = metrics["weight_calibration"]
    return {
        "map": name, "phases": [p["name"] for p in metrics.get("phases", [])], "style": style,
        "size": size_label(size),
        "background": result.background + ("+screen" if result.screen else
                                           "+circle" if result.mask == "circle" else ""),
        "work_shape": list(result.work_shape or []),
        "model": (result.model_choice or {}).get("chosen"),
        "model_vote": {k: (result.model_choice or {}).get(k) for k in ("broad_looks_wins", "pixels")},
        "n_mixed": k["n_mixed"], "n_strong": k["strong"]["n_mixed"], "n_pure": k["n_pure"],
        "mixed_both_strong": _tol(k, "mixed_both", "strong"),
        "mixed_both": _tol(k, "mixed_both"),
        "pure_ok": _tol(k, "pure_ok"),
        "phase_boundary_both": _tol((k.get("boundaries") or {}).get("phase_boundary"), "mixed_both"),
        "both_by_bin": {b: v["both"] for b, v in bins.items()},
        "weight_pred_median": {b: v["pred_median"] for b, v in cal["bins"].items()},
        "weight_true_median": {b: v["true_median"] for b, v in cal["bins"].items()},
        "weight_max_error": cal["max_abs_error"],
        "ceiling_mixed_both_strong": _tol(truth, "mixed_both", "strong"),
        "ceiling_pure_ok": _tol(truth, "pure_ok"),
        "indexer_pure_map": _tol(raw, "pure_kept"),
        "residual_mixed_both_strong": _tol(residual, "mixed_both", "strong"),
        "residual_pure_ok": _tol(residual, "pure_ok"),
        "seconds": ({key: round(v, 1) for key, v in seconds.items()}
                    | {"total": round(sum(seconds.values()), 1)}),
        "report": str(work / "report" / "report.md"),
    }


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _num(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(rows: list[dict], meta: dict) -> str:
    bins = ["0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5"]
    lines = [
        "# Library maps", "",
        f"Checkpoint: `{meta['checkpoint']}`; maps {meta['nav'][0]}x{meta['nav'][1]} pixels, "
        f"{meta['grains']} grains, seed {meta['seed']}; {meta['minutes']:.1f} min in all.", "",
        "Recovery within 3°, in %: **both ≥0.25** = both grains on mixed pixels with minority ≥ 0.25; "
        "**pure ok** = pure pixels keep their grain with none invented; **both wB** per minority bin. "
        "**ceiling** = the true A and B through the same indexer and claim rule; **C pure** = indexing the "
        "map's own pure patterns (below 0.9 the indexer itself caps the result). **w pred** = the weight "
        "head's median predicted minority per true bin (true medians ~0.15, 0.25, 0.35, 0.45); "
        "**w err** its largest error. **residual** = residual subtraction, both ≥0.25.", "",
        "| map | style | px | bg | both ≥0.25 | pure ok | " + " | ".join(f"both wB {b}" for b in bins)
        + " | phase bnd | w pred " + " / ".join(b[:3] for b in bins) + " | w err | ceiling both ≥0.25 | "
        "ceiling pure | C pure | residual | s |",
        "|" + "---|" * (14 + len(bins))]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['map']} | {r['style']} | {r['size']} | failed: {r['error']} |")
            continue
        w = " / ".join(_num(r["weight_pred_median"].get(b)) for b in bins)
        lines.append(
            f"| {r['map']} | {r['style']} | {r['size']} | {r['background']} | "
            f"{_pct(r['mixed_both_strong'])} | {_pct(r['pure_ok'])} | "
            + " | ".join(_pct(r["both_by_bin"].get(b)) for b in bins)
            + f" | {_pct(r['phase_boundary_both'])} | {w} | {_num(r['weight_max_error'])} | "
            f"{_pct(r['ceiling_mixed_both_strong'])} | {_pct(r['ceiling_pure_ok'])} | "
            f"{_pct(r['indexer_pure_map'])} | "
            f"{_pct(r['residual_mixed_both_strong'])} | {r['seconds']['total']:.0f} |")
    missing = meta.get("missing") or []
    if missing:
        lines += ["", "Not in the library (skipped): " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="Model checkpoint (default: the shipped model).")
    parser.add_argument("--phases", nargs="+", default=None,
                        help="Maps to run: library phase names and/or 'duplex' (default: all, the duplex "
                             "and the held-out phase).")
    parser.add_argument("--held-out", default="zr",
                        help="A phase kept out of training, added to the default maps.")
    parser.add_argument("--styles", nargs="+", default=["raw", "processed"],
                        choices=["raw", "processed", "masked", "screen"])
    parser.add_argument("--background", default="auto", choices=["auto", "raw", "processed"],
                        help="separate's background mode (default auto: decided per map)")
    parser.add_argument("--screen-radius", type=float, default=SCREEN_RADIUS,
                        help="The screen style's radius in half shorter sides (1 = the inscribed circle).")
    parser.add_argument("--screen-offset", type=float, nargs=2, default=[0.0, 0.0], metavar=("DY", "DX"),
                        help="The screen style's centre off the pattern's, in half shorter sides.")
    parser.add_argument("--mask", default="auto", choices=["auto", "circle", "none"],
                        help="separate's mask mode (default auto: a round screen's corners masked)")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(120, 120)],
                        help="Pattern sizes: N (square) or SYxSX (rows x columns, e.g. 480x640).")
    parser.add_argument("--nav", nargs=2, type=int, default=[30, 30], metavar=("NY", "NX"))
    parser.add_argument("--grains", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--map-config", type=Path, default=None,
                        help="simulate-map YAML whose camera, detector and footprint every map uses "
                             "(its phase, size, style, map size and grains are set here).")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false",
                        help="Skip the raw-C and residual-subtraction baselines (faster).")
    parser.add_argument("--keep", action="store_true", help="Keep each map's map.zarr and separated.zarr.")
    parser.add_argument("--out", type=Path, default=Path("runs/library_maps"))
    parser.add_argument("--workers", type=int, default=None, help="Dask worker processes (default: cores).")
    args = parser.parse_args(argv)
    args.nav = tuple(args.nav)

    import yaml
    from distributed import LocalCluster

    from kdeconv.config.cluster import ClusterConfig
    from kdeconv.simulate import library_phases

    base = dict(DEFAULT_MAP)
    if args.map_config is not None:
        base = yaml.safe_load(args.map_config.read_text()) or {}
    base["seed"] = args.seed
    names = map_names(args.phases, args.held_out)
    known = set(library_phases()) | {"duplex"}
    missing = [n for n in names if n not in known]
    names = [n for n in names if n in known]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    start = time.perf_counter()
    meta = {"checkpoint": args.checkpoint or "shipped default", "nav": list(args.nav), "grains": args.grains,
            "seed": args.seed, "sizes": [size_label(s) for s in args.sizes], "styles": args.styles,
            "missing": missing}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.WARNING) as local:
        cluster = ClusterConfig(scheduler_address=local.scheduler_address)
        for name in names:
            for size in args.sizes:
                for style in args.styles:
                    print(f"== {name} {style} {size_label(size)}px", flush=True)
                    try:
                        rows.append(run_one(name, style, size, args, base, cluster))
                    except Exception as err:  # one failed map must not lose the others' rows
                        rows.append({"map": name, "style": style, "size": size_label(size),
                                     "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"})
                    r = rows[-1]
                    print(f"   both>=0.25 {_pct(r.get('mixed_both_strong'))} "
                          f"pure ok {_pct(r.get('pure_ok'))} "
                          f"ceiling {_pct(r.get('ceiling_mixed_both_strong'))} "
                          f"{r.get('seconds', {}).get('total', '')} s {r.get('model') or ''} "
                          f"{r.get('error', '')}", flush=True)
                    meta["minutes"] = (time.perf_counter() - start) / 60
                    (args.out / "table.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
                    (args.out / "table.md").write_text(markdown(rows, meta))
    print(f"table: {args.out / 'table.md'}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
