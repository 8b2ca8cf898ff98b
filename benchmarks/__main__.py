"""``python -m benchmarks [--quick] [--only NAME ...]``: run every benchmarks/bench_*.py, print one table,
write benchmarks/results.json with the machine description.

``--only`` reruns some modules and merges their rows into an existing results file of the same
kind (full or quick); each module keeps its own start time, and every ratio is from one run.

Each module runs in its own Python process, so one that raises, exits, hangs (timeout) or
crashes the interpreter becomes a FAILED row instead of ending the run, and no module's leftover
threads, clusters or memory skew the next one's numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `python -m benchmarks` from anywhere in the repo

from benchmarks.common import check_rows, failed_row, machine_description  # noqa: E402


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def _child(module: str, out: str, quick: bool) -> int:
    """Run one module in this process and write its rows (or the error) to ``out`` as JSON."""
    import importlib

    try:
        mod = importlib.import_module(f"benchmarks.{module}")
        rows = check_rows(mod.run(quick=quick), module)
        result = {"ok": True, "rows": rows}
    except BaseException as err:  # noqa: BLE001 - report everything, including SystemExit
        tb = traceback.format_exc(limit=-3)
        result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": tb}
    Path(out).write_text(json.dumps(result, default=_jsonable))
    return 0


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


def run_module(module: str, quick: bool, timeout: float) -> tuple[list[dict], dict]:
    stage = module.removeprefix("bench_")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "benchmarks", "--child", module, str(out)]
        cmd += ["--quick"] if quick else []
        try:
            proc = subprocess.run(cmd, cwd=HERE.parent, timeout=timeout, stdout=sys.stderr, stderr=sys.stderr)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.perf_counter() - start
        if code is None:
            info = {"ok": False, "error": f"timed out after {timeout:g} s"}
        elif not out.exists():
            info = {"ok": False, "error": f"process ended with code {code} without results"}
        else:
            info = json.loads(out.read_text())
    info["seconds"] = round(seconds, 2)
    rows = info.pop("rows", None) if info["ok"] else None
    if not info["ok"]:
        rows = [failed_row(stage, info["error"])]
    return [{**row, "module": module} for row in rows], info


def merge_results(old: dict, new: dict) -> dict:
    """``new`` (some modules rerun) on top of ``old``: other modules' rows and info are kept."""
    rerun = set(new["modules"])
    kept_rows = [r for r in old["rows"] if r.get("module") not in rerun]
    modules = {**{m: i for m, i in old["modules"].items() if m not in rerun}, **new["modules"]}
    order = sorted(modules)
    rows = sorted(kept_rows + new["rows"], key=lambda r: order.index(r["module"]))
    seconds = round(sum(i["seconds"] for i in modules.values()), 1)
    return {**new, "started": old.get("started"), "seconds": seconds,
            "modules": {m: modules[m] for m in order}, "rows": rows}


def _mergeable(path: Path, quick: bool) -> dict | None:
    """The existing results file when ``--only`` may merge into it (same kind, rows tagged by module)."""
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if old.get("quick") != quick or not all("module" in r for r in old.get("rows", [])):
        return None
    return old


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    cols = ("stage", "metric", "value", "baseline", "baseline_value", "ratio", "note")
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols[:-1])]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols[:-1], widths)) + "  note"]
    lines.append("  ".join("-" * w for w in widths) + "  ----")
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row[:-1], widths)) + "  " + row[-1])
    return "\n".join(lines)


def _device_checks(path: Path) -> dict:
    """The ``gpu_check`` record of an existing results file: the device check runs on another
    machine (``benchmarks/gpu_check.sh``), so a CPU run keeps its figures rather than erase them."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {"gpu_check": old["gpu_check"]} if isinstance(old, dict) and "gpu_check" in old else {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 60 s per module)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (bench_ prefix optional)")
    parser.add_argument("--out", default=str(HERE / "results.json"),
                        help="results file [benchmarks/results.json]")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per module [300 quick, 3600 full]")
    parser.add_argument("--child", nargs=2, metavar=("MODULE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child[0], args.child[1], args.quick)

    modules = discover()
    if args.only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only}
        unknown = wanted - set(modules)
        if unknown:
            print(f"Error: no benchmark module {', '.join(sorted(unknown))} (have: {', '.join(modules)})",
                  file=sys.stderr)
            return 2
        modules = [m for m in modules if m in wanted]
    timeout = args.timeout or (300.0 if args.quick else 3600.0)
    machine = machine_description()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    all_rows, per_module = [], {}
    t0 = time.perf_counter()
    for module in modules:
        print(f"== {module}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        module_started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rows, info = run_module(module, args.quick, timeout)
        info["started"] = module_started
        info["cpu_model"] = machine["cpu_model"]  # merged files hold modules run on other machines
        all_rows += rows
        per_module[module] = info
        status = "ok" if info["ok"] else f"FAILED: {info['error']}"
        print(f"== {module}: {status} in {info['seconds']:.1f} s", file=sys.stderr, flush=True)
    results = {"started": started, "quick": args.quick, "seconds": round(time.perf_counter() - t0, 1),
               "machine": machine, "modules": per_module, "rows": all_rows}
    old = _mergeable(Path(args.out), args.quick) if args.only else None
    if old is not None:
        results = merge_results(old, results)
        print(f"merged into {args.out}: {', '.join(per_module)} rerun, "
              f"{len(results['modules']) - len(per_module)} module(s) kept", file=sys.stderr)
    results.update(_device_checks(Path(args.out)))
    Path(args.out).write_text(json.dumps(results, indent=2, default=_jsonable))
    print(f"Machine: {machine['cpu_model']}, {machine['cores_usable']} usable cores, "
          f"{machine['ram_gb']} GB RAM, "
          f"GPU: {machine['gpu'] or 'none'}")
    print(format_table(all_rows))
    failed = [m for m, i in per_module.items() if not i["ok"]]
    print(f"\n{len(modules) - len(failed)}/{len(modules)} modules ok"
          + (f"; failed: {', '.join(failed)}" if failed else "") + f". Results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
