"""The neighbour fit's reach on a map whose step is fine against the beam: a simulated map with a
wide Gaussian footprint, separated with the model alone and with each reach, scored on its truth.

    python workflows/check_fit_reach.py --phase zr --footprint 3 --reach 3,6 6,12 0,0 [--out runs/fit_reach]

``--footprint``: the beam's 2-sigma radius in scan steps (1 on the library maps). ``--reach``:
radius,far_radius pairs; ``0,0`` is the model alone (``neighbour_fit: false``). Prints one JSON
row per reach (both grains within 3 deg at minority >= 0.25, pure ok, the 0.1-0.2 bin, every mixed
pixel) and writes ``OUT/PHASE_fpF/rows.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(out: Path, cluster, footprint: float, phase: str, reaches, nav, grains: int) -> list[dict]:
    from check_adapt import case_map, recovery_row

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

    quiet = (lambda *_: None)
    work = out / f"{phase}_fp{footprint:g}"
    work.mkdir(parents=True, exist_ok=True)
    config = case_map("zr", nav, grains)
    config["phase"] = phase
    config["footprint"]["radius"] = footprint
    truth = work / "sim" / TRUTH_NAME
    if not (work / "map.zarr").exists():
        simulate_map(validate_config(SimulateMapConfig, config, phase), work / "sim")
        map_file = work / "sim" / open_store(truth, "truth").attrs["map_file"]
        ingest(validate_config(IngestConfig, {"input": str(map_file), "output": str(work / "map.zarr")}),
               cluster, echo=quiet)
    rows = []
    for radius, far in reaches:
        start = time.perf_counter()
        separated = work / f"separated_{radius}_{far}.zarr"
        fit = {"radius": radius, "far_radius": far} if radius else False
        separate_map(work / "map.zarr", separated,
                     validate_config(SeparateConfig, {"neighbour_fit": fit}, "separate"), cluster,
                     echo=quiet, progress=False, overwrite=True)
        metrics = evaluate_stores(separated, truth, work / f"report_{radius}_{far}",
                                  validate_config(EvaluateConfig, {"baselines": False}, "evaluate"),
                                  echo=quiet)
        row = {**recovery_row(metrics), "reach": [radius, far],
               "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    (work / "rows.json").write_text(json.dumps(rows, indent=1))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", default="zr")
    parser.add_argument("--footprint", type=float, default=3.0)
    parser.add_argument("--reach", nargs="+", default=["3,6", "6,12", "0,0"])
    parser.add_argument("--nav", nargs=2, type=int, default=[40, 40])
    parser.add_argument("--grains", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/fit_reach"))
    args = parser.parse_args(argv)
    reaches = [tuple(int(v) for v in item.split(",")) for item in args.reach]
    import logging

    from distributed import LocalCluster

    from kdeconv.config.cluster import ClusterConfig

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as local:
        run(args.out, ClusterConfig(scheduler_address=local.scheduler_address), args.footprint, args.phase,
            reaches, args.nav, args.grains)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
