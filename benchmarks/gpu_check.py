"""``python -m benchmarks.gpu_check``: the device check of separate and train, in one go.

Run by ``benchmarks/gpu_check.sh`` (which installs the missing packages first). Steps, each timed,
each recorded in ``$OUT/gpu_check.json`` as soon as it ends (a step that fails is recorded and the
next one runs):

1. ``map``: a synthetic map store of ``GPU_CHECK_N`` patterns (grains with mixed boundaries, a
   detector background, shot noise) at ``GPU_CHECK_SIZE`` px, uint16, written straight to Zarr
   with the map store's codec and chunking;
2. ``separate``: ``kdeconv.separate.driver.separate_map`` end to end (Zarr in, Zarr out, the
   static background pass included) on a one-worker local cluster; prints patterns/s;
3. ``compare_cpu``: the device's A, B and weights on a subset against the CPU path (numpy kernel,
   fp32) on the same patterns: bf16 tolerance at the default precision, and fp32 on the device;
4. ``bare_forward``: the network alone on device-resident batches of the size the pipeline uses,
   and the device kernel on a device-resident chunk (preprocessing + network, no I/O);
4b. ``pipeline_alone``: the separation pass without Dask (read, device, write), with where it waits;
5. ``train``: ``kdeconv.train.run`` for ``GPU_CHECK_TRAIN_SECONDS`` with AMP on a synthetic pairs
   store; checks that the loss falls and that the checkpoint round-trips;
6. ``adapt``: ``kdeconv adapt`` for a short budget on a small map of the same kind (60x40), when
   time is left (optional).

Environment: ``GPU_CHECK_DEVICE`` (cuda | cpu; cpu is the dry run with tiny sizes),
``GPU_CHECK_N``, ``GPU_CHECK_SIZE``, ``GPU_CHECK_TRAIN_SECONDS``, ``GPU_CHECK_ADAPT`` (0 skips),
``GPU_CHECK_WORK`` (scratch folder), ``GPU_CHECK_BLOCK_IMPORTS`` (comma-separated modules that
must not be needed: they are made unimportable, in the workers too), ``OUT`` (results folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")
DRY = DEVICE == "cpu"
N = int(os.environ.get("GPU_CHECK_N", 240 if DRY else 100_000))
SIZE = int(os.environ.get("GPU_CHECK_SIZE", 64 if DRY else 120))
TRAIN_SECONDS = float(os.environ.get("GPU_CHECK_TRAIN_SECONDS", 8 if DRY else 120))
ADAPT = os.environ.get("GPU_CHECK_ADAPT", "0" if DRY else "1") != "0"
# The whole check must end inside the device call (8 minutes with the install): later steps are
# skipped once this many seconds have passed.
DEADLINE = float(os.environ.get("GPU_CHECK_DEADLINE", 420))
COMPARE_N = 32 if DRY else 512

# Done-when figures of the throughput goal.
GOAL_RATE = 20_000
GOAL_RATIO = 0.8


def block_imports(names: list[str], folder: Path) -> None:
    """Make ``names`` unimportable here and in every process started later (stub packages on
    PYTHONPATH that raise ImportError): proves the check needs none of them."""
    for name in names:
        pkg = folder / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


class Report:
    """The results file, rewritten after every step."""

    def __init__(self, path: Path):
        self.path = path
        self.start = time.perf_counter()
        self.data: dict = {"device": DEVICE, "dry_run": DRY, "n": N, "size": SIZE, "steps": {},
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def step(self, name: str, fn, *args, **kw):
        if self.elapsed() > DEADLINE:
            self.data["steps"][name] = {"ok": False, "skipped": f"deadline ({DEADLINE:g} s) reached"}
            self.save()
            print(f"== {name}: skipped (deadline)", flush=True)
            return None
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kw) or {}
            result = {"ok": bool(result.get("ok", True)), **result}
        except Exception as err:  # noqa: BLE001 - every failure is a result of the check
            result = {"ok": False, "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc(limit=-4)}
        result["seconds"] = round(time.perf_counter() - t0, 2)
        self.data["steps"][name] = result
        self.save()
        print(f"== {name}: {'ok' if result['ok'] else 'FAILED'} in {result['seconds']:.1f} s "
              + json.dumps({k: v for k, v in result.items() if k not in ("traceback", "ok", "seconds")},
                           default=str)[:600], flush=True)
        return result

    def save(self):
        self.data["seconds"] = round(self.elapsed(), 1)
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


# --------------------------------------------------------------------------- synthetic data

def _bands(rng, n: int, size: int) -> np.ndarray:
    """``n`` Kikuchi-like patterns in [0, 1]: bright bands at random angles and offsets."""
    y, x = (np.mgrid[:size, :size] / size).astype(np.float32)
    out = np.empty((n, size, size), np.float32)
    for k in range(n):
        img = np.zeros((size, size), np.float32)
        for angle, offset, width in zip(rng.uniform(0, np.pi, 7), rng.uniform(-0.4, 0.4, 7),
                                        rng.uniform(0.02, 0.05, 7)):
            d = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) - offset
            img += np.exp(-(d / width) ** 2)
        out[k] = img / img.max()
    return out


def map_shape(n: int) -> tuple[int, int]:
    nx = 400 if n >= 4000 else 40
    return -(-n // nx), nx


def write_map(path: Path, n: int, size: int, threads: int) -> dict:
    """A map store as ``kdeconv ingest`` lays it out: grains (a Voronoi of seeds), a mixed band
    along each boundary, a detector background, shot noise (from a bank, so it is fast)."""
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    from kdeconv.io.ingest import map_compressors
    from kdeconv.io.store import nav_chunks, store_attrs

    ny, nx = map_shape(n)
    rng = np.random.default_rng(0)
    grains = _bands(rng, 12, size)
    seeds = rng.uniform(0, 1, (12, 2)) * [ny, nx]
    yy, xx = np.mgrid[:size, :size] / size
    background = (0.35 + 0.65 * np.exp(-((yy - 0.45) ** 2 + (xx - 0.5) ** 2) / 0.18)).astype(np.float32)
    bank = rng.standard_normal((97, size, size)).astype(np.float32)
    chunks = nav_chunks((ny, nx), (size, size), 2)
    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("map", source={"format": "synthetic (gpu_check)",
                                                  "scan": {"step_x": 1.0, "step_y": 1.0, "unit": "um"}}))
    arr = group.create_array("patterns", shape=(ny, nx, size, size), dtype="uint16", chunks=chunks,
                             compressors=map_compressors(), config={"write_empty_chunks": True},
                             dimension_names=("y", "x", "sy", "sx"))

    def fill(r0: int) -> None:
        r1 = min(ny, r0 + chunks[0])
        j, i = np.mgrid[r0:r1, :nx]
        d = np.hypot(j[..., None] - seeds[:, 0], i[..., None] - seeds[:, 1])
        order = np.argsort(d, axis=-1)
        first, second = order[..., 0], order[..., 1]
        nearest = np.take_along_axis(d, order[..., :2], -1)
        gap = nearest[..., 1] - nearest[..., 0]
        w_b = np.clip(0.5 - gap / 6.0, 0, 0.5).astype(np.float32)[..., None, None]
        signal = (1 - w_b) * grains[first] + w_b * grains[second]
        expected = 3000 * background * (0.6 + 0.4 * signal)
        noise = bank[(np.arange(expected[..., 0, 0].size) * 31 + r0) % len(bank)].reshape(expected.shape)
        arr[r0:r1] = np.clip(np.rint(expected + noise * np.sqrt(expected)), 0, 65535).astype(np.uint16)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fill, range(0, ny, chunks[0])))
    seconds = time.perf_counter() - t0
    stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"shape": [ny, nx, size, size], "patterns": ny * nx, "chunks": list(chunks),
            "write_seconds": round(seconds, 2), "stored_mb": round(stored / 2**20, 1),
            "raw_mb": round(ny * nx * size * size * 2 / 2**20, 1)}


def write_pairs(path: Path, n: int, size: int) -> None:
    """A pairs store for training (C, A, B uint16 full range, weights), as bench_train writes."""
    import zarr

    from kdeconv.io.store import store_attrs

    rng = np.random.default_rng(1)
    a, b = _bands(rng, n, size), _bands(rng, n, size)
    w = rng.uniform(0.5, 0.9, n).astype(np.float32)
    c = rng.poisson((w[:, None, None] * a + (1 - w[:, None, None]) * b) * 500).astype(np.float32)
    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("pairs", {"benchmark": "gpu_check"}))
    for name, x in (("C", c), ("A", a), ("B", b)):
        group.create_array(name, shape=x.shape, chunks=(128, size, size), dtype="uint16")[:] = \
            np.round(x / x.max() * 65535).astype(np.uint16)
    group.create_array("weights", shape=(n, 2), chunks=(128, 2), dtype="float32")[:] = np.stack([w, 1 - w], 1)


# --------------------------------------------------------------------------- steps

def environment() -> dict:
    import importlib.metadata as md

    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(card=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                    memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    bf16=torch.cuda.is_bf16_supported(), devices=torch.cuda.device_count())
    versions = {}
    for name in ("numpy", "scipy", "dask", "distributed", "zarr", "numcodecs", "pydantic", "h5py",
                 "tifffile", "numba", "cloudpickle", "toolz", "msgpack", "click", "packaging"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    info["versions"] = versions
    import kdeconv  # noqa: F401  (the package imports in this environment)

    info["ok"] = DRY or torch.cuda.is_available()
    return info


def separate(map_path: Path, out: Path, report: Report) -> dict:
    from kdeconv.config.cluster import ClusterConfig
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.separate.driver import separate_map

    config = SeparateConfig(device=DEVICE, panels=0, background={"mode": "raw"}, model="default")
    # One worker for the one card, with every core: the passes besides the model (the static
    # background's mean, the in-grain segmentation) run on the worker's threads.
    threads = 2 if DRY else max(2, min(16, os.cpu_count() or 8))
    cluster = ClusterConfig(workers=1, threads_per_worker=threads)
    t0 = time.perf_counter()
    result = separate_map(map_path, out, config, cluster, echo=lambda line: print("  " + line, flush=True),
                          progress=False, pipeline="device" if DRY else "auto")
    wall = time.perf_counter() - t0
    rate = result.patterns / result.seconds
    phases = dict(result.phase_seconds)
    separation_rate = result.patterns / phases["separation"] if phases.get("separation") else None
    print(f"separate: {result.patterns} patterns {SIZE}x{SIZE} in {result.seconds:.1f} s = "
          f"{rate:,.0f} patterns/s (end to end, Zarr in and out); passes {phases}", flush=True)
    report.data["separate_patterns_per_s"] = rate
    report.data["separation_pass_patterns_per_s"] = separation_rate
    return {"patterns": result.patterns, "chunks": result.chunks, "patterns_per_s": round(rate, 1),
            "phase_seconds": phases,
            "separation_pass_patterns_per_s": None if separation_rate is None else round(separation_rate, 1),
            "compute_seconds": round(result.seconds, 2), "wall_seconds_with_cluster_start": round(wall, 2),
            "work_shape": list(result.work_shape or ()), "background": result.background,
            "cluster": f"1 worker x {threads} threads", "goal_patterns_per_s": GOAL_RATE,
            "meets_goal": None if DRY else rate >= GOAL_RATE}


def _ncc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    return (x * y).sum(1) / np.maximum(np.sqrt((x * x).sum(1) * (y * y).sum(1)), 1e-12)


def separated_preprocessing(group) -> tuple[tuple[int, int], dict, np.ndarray | None, float | None]:
    """What a separated store says its patterns went through: the model's working shape, the
    background settings, the static background (None when there is none) and the residual pass
    (None: one pass)."""
    attrs = dict(group.attrs)
    work = tuple(attrs["preprocessing"]["working_size"]["model_shape"])
    static = group["static_background"][...] if "static_background" in group else None
    residual_pass = (attrs.get("config") or {}).get("residual_pass")
    return work, attrs["preprocessing"]["background"], static, residual_pass


def device_kernel(separator, group, sig_shape, dtype, batch_size: int):
    """The device kernel ``separate`` ran for the separated store ``group``."""
    from kdeconv.separate.device import DeviceKernel

    work, background, static, residual_pass = separated_preprocessing(group)
    return DeviceKernel(separator, sig_shape=tuple(sig_shape), work_shape=work, background=background,
                        static_bg=static, dtype=dtype, batch_size=batch_size, residual_pass=residual_pass)


@lru_cache(maxsize=1)
def default_separator():
    """The shipped model on the checked device at the default precision, loaded once."""
    from kdeconv.model import load_separator

    return load_separator(None, device=DEVICE, precision="auto")


def compare_cpu(map_path: Path, out: Path) -> dict:
    """The device output of the first patterns against the CPU path on the same patterns."""
    import torch
    import zarr

    from kdeconv.model import load_separator
    from kdeconv.separate.chunk import from_dtype, separate_patterns
    from kdeconv.separate.device import from_transfer, to_transfer

    src = zarr.open_group(str(map_path), mode="r")["patterns"]
    got = zarr.open_group(str(out), mode="r")
    work, background, static, residual_pass = separated_preprocessing(got)
    rows = max(1, COMPARE_N // src.shape[1])
    raw = src[:rows].reshape((-1,) + src.shape[-2:])
    cpu = load_separator(None, device="cpu", precision="fp32")
    ref_a, ref_b, ref_w = separate_patterns(raw, cpu, batch_size=64, background=background,
                                            static_bg=static, work_shape=work, residual_pass=residual_pass)
    dev_a = got["A"][:rows].reshape(raw.shape)
    dev_w = got["weights"][:rows].reshape(-1, 2)

    def stats(a, b, w, label):
        diff = np.abs(from_dtype(a) - from_dtype(ref_a))
        ncc = _ncc(from_dtype(a), from_dtype(ref_a))
        return {f"{label}_A_mean_abs": float(diff.mean()), f"{label}_A_max_abs": float(diff.max()),
                f"{label}_A_ncc_min": float(ncc.min()), f"{label}_A_ncc_median": float(np.median(ncc)),
                f"{label}_B_ncc_median": float(np.median(_ncc(from_dtype(b), from_dtype(ref_b)))),
                f"{label}_weights_max_abs": float(np.abs(w - ref_w).max())}

    result = {"patterns": int(len(raw)), "reference": "CPU numpy kernel, fp32"}
    result.update(stats(dev_a, got["B"][:rows].reshape(raw.shape), dev_w, "device_default_precision"))
    # The same kernel on the device in fp32 (TF32 off): float rounding only.
    device = "cpu" if DRY else "cuda"
    fp32 = load_separator(None, device=device, precision="fp32")
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        kernel = device_kernel(fp32, got, raw.shape[-2:], raw.dtype, batch_size=256)
        res = kernel(to_transfer(raw).to(fp32.device))
        a32 = from_transfer(res.a.cpu(), raw.dtype)
        b32 = from_transfer(res.b.cpu(), raw.dtype)
        result.update(stats(a32, b32, res.weights.cpu().numpy(), "device_fp32"))
        result["device_fp32_A_max_lsb"] = int(np.abs(a32.astype(np.int64) - ref_a).max())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    # bf16 tolerance: the default precision's outputs are the CPU's to within bf16 rounding.
    result["ok"] = (result["device_default_precision_A_ncc_median"] >= 0.99
                    and result["device_default_precision_weights_max_abs"] <= 0.03
                    and result["device_fp32_A_ncc_min"] >= 0.999
                    and result["device_fp32_weights_max_abs"] <= 1e-3)
    return result


def _timed(fn, device, repeats: int) -> float:
    import torch

    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / repeats


def bare_forward(map_path: Path, out: Path, report: Report) -> dict:
    """The network alone, then the device kernel alone, on device-resident data."""
    import torch
    import zarr

    from kdeconv.separate.device import device_batch_size, to_transfer

    separator = default_separator()
    got = zarr.open_group(str(out), mode="r")
    work = separated_preprocessing(got)[0]
    batch = device_batch_size(separator, work, 64) if not DRY else 16
    x = torch.rand((batch,) + work, device=separator.device)
    repeats = 1 if DRY else 20
    seconds = _timed(lambda: separator.forward_tensor(x), separator.device, repeats)
    bare = batch / seconds
    src = zarr.open_group(str(map_path), mode="r")["patterns"]
    chunk = src[: src.chunks[0]].reshape((-1,) + src.shape[-2:])[: 32 if DRY else None]
    kernel = device_kernel(separator, got, chunk.shape[-2:], chunk.dtype, batch)
    raw = to_transfer(chunk).to(separator.device)
    kernel_rate = len(chunk) / _timed(lambda: kernel(raw), separator.device, max(1, repeats // 4))
    pipeline = report.data.get("separate_patterns_per_s")
    ratio = pipeline / bare if pipeline else None
    separation = report.data.get("separation_pass_patterns_per_s")
    pass_ratio = separation / bare if separation else None
    shown = "-" if ratio is None else f"{ratio:.3f}"
    shown_pass = "-" if pass_ratio is None else f"{pass_ratio:.3f}"
    print(f"bare forward: {bare:,.0f} patterns/s (batch {batch}, {separator.precision}); device "
          f"kernel without I/O {kernel_rate:,.0f}/s; pipeline/bare = {shown} end to end, "
          f"{shown_pass} for the separation pass alone", flush=True)
    return {"bare_forward_patterns_per_s": round(bare, 1), "batch": batch, "precision": separator.precision,
            "device_kernel_patterns_per_s": round(kernel_rate, 1),
            "pipeline_over_bare": None if ratio is None else round(ratio, 3),
            "separation_pass_over_bare": None if pass_ratio is None else round(pass_ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "meets_goal": None if DRY or ratio is None else ratio >= GOAL_RATIO}


def launch_probe(kernel, src) -> dict:
    """One chunk through the device kernel: the seconds until the call returns against those until
    the card is done (a launch that returns only at the end waits on the card somewhere), and on
    CUDA the host syncs that torch reports in it (``torch.cuda.set_sync_debug_mode``)."""
    import warnings

    import torch

    from kdeconv.separate.device import to_transfer

    chunk = np.asarray(src[: src.chunks[0]]).reshape((-1,) + src.shape[-2:])
    raw = to_transfer(chunk).to(kernel.device)
    cuda = kernel.device.type == "cuda"
    kernel(raw)  # warm: allocator, cuDNN plans
    if cuda:
        torch.cuda.synchronize(kernel.device)
    syncs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        t0 = time.perf_counter()
        try:
            kernel(raw)
            returned = time.perf_counter() - t0
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
        if cuda:
            torch.cuda.synchronize(kernel.device)
        done = time.perf_counter() - t0
        syncs = sorted({str(w.message).splitlines()[0][:160] for w in caught})
    return {"patterns": int(len(chunk)), "launch_returned_s": round(returned, 4),
            "device_done_s": round(done, 4), "host_syncs": len(syncs), "sync_messages": syncs[:5]}


def pipeline_alone(map_path: Path, out: Path) -> dict:
    """The separation pass without Dask: ``run_pipeline`` in this process over every chunk of the
    map, writing into the separated store again (the same values), with the default reader and
    writer threads, more, fewer, and without the writes; and a probe of one chunk's launch. Where
    the loop waits says which stage bounds the rate."""
    import zarr

    from kdeconv.separate.device import device_batch_size
    from kdeconv.separate.driver import _chunk_region, _write_chunk
    from kdeconv.separate.pipeline import ChunkJob, pipeline_threads, run_pipeline

    separator = default_separator()
    src = zarr.open_group(str(map_path), mode="r")["patterns"]
    group = zarr.open_group(str(out), mode="r+")
    nav_shape, nav_chunks = src.shape[:-2], src.chunks[:-2]
    grid = [-(-n // c) for n, c in zip(nav_shape, nav_chunks)]
    jobs = [ChunkJob(idx, _chunk_region(idx, nav_shape, nav_chunks)) for idx in np.ndindex(*grid)]
    batch = device_batch_size(separator, separated_preprocessing(group)[0], 64)
    kernel = device_kernel(separator, group, src.shape[-2:], src.dtype, batch)
    patterns = int(np.prod(nav_shape))
    default_readers, default_writers, _ = pipeline_threads(kernel.device)
    result: dict = {"patterns": patterns, "chunk_patterns": int(np.prod(nav_chunks)),
                    "launch": launch_probe(kernel, src)}

    def write(job, a, b, w, blank):
        _write_chunk(group, job.region, job.index, a, b, w, blank)

    def skip_write(job, a, b, w, blank):  # the rate without the Zarr writes (nothing is marked)
        pass

    # More threads: are readers and writers short? Fewer: do their threads slow the launches
    # (the GIL)? No writes: what the write side costs.
    variants = (("default", default_readers, default_writers, write),
                ("more_threads", 2 * default_readers, 2 * default_writers, write),
                ("fewer_threads", 2, 2, write),
                ("no_writes", default_readers, default_writers, skip_write))
    for label, readers, writers, writer in variants:
        threads = (readers, writers)
        waits: dict = {}
        t0 = time.perf_counter()
        run_pipeline(jobs, read=lambda job: src[job.region], kernel=kernel, write=writer,
                     readers=threads[0], writers=threads[1], waits=waits)
        seconds = time.perf_counter() - t0
        result[label] = {"patterns_per_s": round(patterns / seconds, 1), "seconds": round(seconds, 2),
                         **waits}
        print(f"pipeline alone ({label}: {threads[0]} readers, {threads[1]} writers): "
              f"{patterns / seconds:,.0f} patterns/s; {waits}", flush=True)
    return result


def train(work: Path) -> dict:
    """AMP training for a fixed time on a synthetic pairs store: the loss falls, the checkpoint
    loads back with the same weights and separates."""
    import csv

    import torch

    from kdeconv.model import load_separator, read_checkpoint
    from kdeconv.train.driver import run

    n = 96 if DRY else 8192
    write_pairs(work / "pairs.zarr", n, SIZE)
    batch = 4 if DRY else 64
    config = {"batch_size": batch, "max_minutes": TRAIN_SECONDS / 60, "max_steps": 10**6,
              "warmup_steps": 20, "lr": 2e-3, "device": DEVICE, "precision": "auto", "log_every": 5,
              "val_fraction": 0.05, "val_max": 256, "early_stop_patience": 0, "steps_per_epoch": 200}
    if DRY:  # a few steps of a small network: the loop, the loss and the checkpoint, not speed
        config.update(max_minutes=None, max_steps=16, warmup_steps=2, log_every=2, val_fraction=0.1,
                      steps_per_epoch=8, model={"widths": [8, 16, 16, 16]}, precision="fp32")
    run_dir = work / "train_run"
    result = run(config, data=[work / "pairs.zarr"], out=run_dir, progress=False,
                 echo=lambda line: print("  " + line, flush=True))
    with open(run_dir / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("kind") == "train" and r.get("loss")]
    losses = [float(r["loss"]) for r in rows]
    head, tail = np.mean(losses[:3]), np.mean(losses[-3:])
    summary = json.loads((run_dir / "summary.json").read_text())
    ckpt = read_checkpoint(result.last)
    reloaded = load_separator(result.last, device=DEVICE, precision="auto")
    loaded = reloaded.model.state_dict()
    same = all(torch.equal(v.cpu(), loaded[k].cpu()) for k, v in ckpt["state_dict"].items())
    probe = np.random.default_rng(2).random((4, SIZE, SIZE), dtype=np.float32)
    a, b, w = reloaded.separate(probe)
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(w).all())
    steps_per_s = result.steps / max(result.seconds, 1e-9)
    return {"steps": result.steps, "seconds": result.seconds, "steps_per_s": round(steps_per_s, 2),
            "samples_per_s": summary.get("samples_per_s"), "batch": batch, "device": summary.get("device"),
            "precision": summary.get("precision"), "loss_first": float(head), "loss_last": float(tail),
            "loss_falls": bool(tail < head), "checkpoint_roundtrip": bool(same and finite),
            "ok": bool(tail < head and same and finite)}


ADAPT_PATTERNS = 2400  # a 60x40 map: adapt's search and pairs on a map of a size users adapt on


def adapt(work: Path) -> dict:
    """``kdeconv adapt`` for a short budget (the CLI in a child process) on a small map of the same
    kind as the separated one."""
    minutes = 0.5
    map_path = work / "adapt_map.zarr"
    write_map(map_path, ADAPT_PATTERNS, SIZE, 2 if DRY else 8)
    cmd = [sys.executable, "-m", "kdeconv", "adapt", str(map_path), "--out", str(work / "adapt_run"),
           "--minutes", str(minutes), "--workers", "1"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, cwd=REPO)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-10:]
    return {"returncode": proc.returncode, "wall_seconds": round(time.perf_counter() - t0, 1),
            "output_tail": tail, "ok": proc.returncode == 0}


def main() -> int:
    out_dir = Path(os.environ.get("OUT") or REPO / "gpu_check_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("GPU_CHECK_WORK") or tempfile.mkdtemp(prefix="kdeconv_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    blocked = [n for n in os.environ.get("GPU_CHECK_BLOCK_IMPORTS", "").split(",") if n]
    if blocked:
        block_imports(blocked, work / "blocked_imports")
    os.environ.setdefault("KDECONV_PROGRESS", "0")
    report = Report(out_dir / "gpu_check.json")
    report.data["blocked_imports"] = blocked
    try:
        env = report.step("environment", environment)
        if not env or not env["ok"]:
            print("no CUDA device: nothing to check (set GPU_CHECK_DEVICE=cpu for the dry run)", flush=True)
            return 2
        map_path, sep_out = work / "map.zarr", work / "separated.zarr"
        threads = 2 if DRY else max(2, min(16, os.cpu_count() or 4))
        if not report.step("map", write_map, map_path, N, SIZE, threads)["ok"]:
            return 1
        if report.step("separate", separate, map_path, sep_out, report)["ok"]:
            report.step("compare_cpu", compare_cpu, map_path, sep_out)
            report.step("bare_forward", bare_forward, map_path, sep_out, report)
            report.step("pipeline_alone", pipeline_alone, map_path, sep_out)
        report.step("train", train, work)
        if ADAPT:
            report.step("adapt", adapt, work)
        steps = report.data["steps"]
        report.data["ok"] = all(s.get("ok") for name, s in steps.items() if name != "adapt")
        report.save()
        print(f"gpu_check: {'ok' if report.data['ok'] else 'FAILED'} in {report.elapsed():.0f} s; "
              f"results in {report.path}", flush=True)
        return 0 if report.data["ok"] else 1
    finally:
        if not os.environ.get("GPU_CHECK_WORK"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
