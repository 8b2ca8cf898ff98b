"""Dask/Zarr driver of ``kdeconv separate``: a whole map, chunk by chunk, resumable.

Each navigation chunk of ``patterns`` becomes one ``map_blocks`` task that runs the kernel
(``chunk.separate_patterns``) with the worker's cached model, writes its region of A, B,
weights and ``blank`` straight into the staging store, and only then sets its ``chunk_done``
marker (the resume protocol of ``kdeconv.io.resume``). A rerun of the same command skips marked
chunks; a chunk that died half-written has no marker and is redone, so the finished store is
byte-identical to an uninterrupted run.

Blank frames (one value in every pixel) are left empty (A = B = 0, weights NaN), flagged in
``blank`` and counted in the attrs; they do not enter the map-mean static background.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.cluster import ClusterConfig
from kdeconv.config.separate import SeparateConfig
from kdeconv.errors import InputError
from kdeconv.io import resume
from kdeconv.io.store import open_for_writing, open_store, release_output, store_attrs
from kdeconv.preprocess.background import static_background_from_mean
from kdeconv.preprocess.mask import screen_shape
from kdeconv.separate.chunk import blank_frames, preprocess_patterns, separate_patterns
from kdeconv.separate.claims import (
    describe_in_grain_claims,
    in_grain_claims,
    mostly_mixed_warning,
    unfamiliar_warning,
    write_in_grain_claims,
)
from kdeconv.separate.inputs import ModelInputPlan, plan_model_input
from kdeconv.separate.model_choice import choose_shipped_model, describe_model_choice
from kdeconv.separate.neighbours import describe_neighbour_fit, settings_for, write_neighbour_fit
from kdeconv.separate.worker import cached_separator

__all__ = ["run", "separate_map", "SeparateResult", "open_separate_client", "check_device",
           "separate_block", "load_checked", "trial_pattern", "check_model_on", "mean_of_non_blank",
           "create_store", "resume_key"]

DONE = resume.LEDGER
STATIC = "static_background"
BLANK = "blank"


@dataclass
class SeparateResult:
    out: Path
    patterns: int          # patterns separated in this run
    total: int             # patterns in the map
    chunks_skipped: int    # chunks found complete from an earlier run
    chunks: int
    seconds: float
    report_files: list[Path]
    blank_frames: int = 0  # patterns of one value, left empty (A = B = 0, weights NaN)
    background: str = "raw"                     # "raw" or "processed", as applied
    mask: str = "none"                          # "circle": raw patterns masked first (a round screen)
    screen: tuple[int, int, int] | None = None  # the round screen's square they were cut to first
    precision: str = "fp32"                     # what the model ran at: fp32, bf16 or fp16
    work_shape: tuple[int, int] | None = None   # the pattern shape the model saw
    # wall seconds of each pass over the map: static_background, separation, in_grain_claims
    phase_seconds: dict[str, float] = field(default_factory=dict)
    # which shipped model separated the map and why (kdeconv.separate.model_choice); None when a
    # checkpoint or a model was named
    model_choice: dict[str, Any] | None = None


# --------------------------------------------------------------------------- task (runs on workers)

def separate_block(block: np.ndarray, *, checkpoint: str | None, sha256: str, device: str,
                   precision: str, batch_size: int, background: dict, static_bg: np.ndarray | None,
                   work_shape: tuple[int, int] | None, residual_pass: float | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block (..., sy, sx) of a map -> A, B (its shape and dtype) and weights (..., 2), with
    this process's cached model: what every task of ``separate`` runs, on a worker or in process."""
    separator = cached_separator(checkpoint, sha256, device, precision)
    return separate_patterns(block, separator, batch_size=batch_size, background=background,
                             static_bg=static_bg, out_dtype=block.dtype, work_shape=work_shape,
                             residual_pass=residual_pass)


def _separate_and_write(block: np.ndarray, block_info=None, *, out_path: str, checkpoint: str | None,
                        sha256: str, device: str, batch_size: int, background: dict,
                        static_token: str = "", precision: str = "auto",
                        work_shape: tuple[int, int] | None = None,
                        residual_pass: float | None = None) -> np.ndarray:
    """Separate one chunk, write its A, B, weights and blank mask, then mark it done. Returns its
    pattern count."""
    info = block_info[0]
    nav_ndim = block.ndim - 2
    region = tuple(slice(a, b) for a, b in info["array-location"][:nav_ndim])
    chunk_index = tuple(info["chunk-location"][:nav_ndim])
    group = open_for_writing(out_path)
    static_bg = (_static_background(out_path, static_token)
                 if background.get("static", "none") != "none" else None)
    a, b, w = separate_block(block, checkpoint=checkpoint, sha256=sha256, device=device,
                             precision=precision, batch_size=batch_size, background=background,
                             static_bg=static_bg, work_shape=work_shape, residual_pass=residual_pass)
    _write_chunk(group, region, chunk_index, a, b, w, blank_frames(block))
    return np.full((1,) * nav_ndim, int(np.prod(block.shape[:nav_ndim])), dtype=np.int64)


def _write_chunk(group, region, chunk_index, a, b, w, blank) -> None:
    """One chunk's region of every output, then its ledger marker."""
    group["A"][region] = a
    group["B"][region] = b
    group["weights"][region] = w
    group[BLANK][region] = blank
    resume.mark_done(group, chunk_index)  # only after the data: a marker always means a whole chunk


def _chunk_region(index: tuple[int, ...], nav_shape, nav_chunks) -> tuple[slice, ...]:
    return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, nav_chunks, nav_shape))


_SOURCES: dict[str, Any] = {}


def _source_array(map_path: str):
    """The map's ``patterns`` opened read-only, once per process and path."""
    import zarr

    if map_path not in _SOURCES:
        if len(_SOURCES) > 8:
            _SOURCES.clear()
        _SOURCES[map_path] = zarr.open_array(map_path, mode="r")
    return _SOURCES[map_path]


def _separate_range(indices: list[tuple[int, ...]], *, map_path: str, out_path: str,
                    checkpoint: str | None, sha256: str, device: str, batch_size: int,
                    background: dict, static_token: str = "", precision: str = "auto",
                    work_shape: tuple[int, int] | None = None, pipeline: str = "auto",
                    residual_pass: float | None = None) -> int:
    """Separate the chunks ``indices`` in order on this worker and write each (then mark it done).

    A torch model on a GPU (or ``pipeline="device"``, any device) runs the device pipeline
    (``kdeconv.separate.pipeline``): reading, copying, the model and writing overlap. Otherwise
    each chunk runs the numpy kernel, as the per-chunk tasks do. Returns the pattern count.
    """
    from kdeconv.separate.device import DeviceKernel, device_batch_size, supports_device_kernel
    from kdeconv.separate.pipeline import ChunkJob, run_pipeline

    src = _source_array(map_path)
    nav_shape, nav_chunks = src.shape[:-2], src.chunks[:-2]
    jobs = [ChunkJob(tuple(idx), _chunk_region(tuple(idx), nav_shape, nav_chunks)) for idx in indices]
    group = open_for_writing(out_path)
    static_bg = (_static_background(out_path, static_token)
                 if background.get("static", "none") != "none" else None)
    separator = cached_separator(checkpoint, sha256, device, precision)

    def write(job, a, b, w, blank):
        _write_chunk(group, job.region, job.index, a, b, w, blank)

    on_device = supports_device_kernel(separator) and (
        pipeline == "device" or getattr(separator.device, "type", "cpu") == "cuda")
    if pipeline == "device" and not on_device:
        raise RuntimeError("the device pipeline needs a torch separator (kdeconv.model.Separator)")
    if not on_device:
        total = 0
        for job in jobs:
            block = np.asarray(src[job.region])
            a, b, w = separate_block(block, checkpoint=checkpoint, sha256=sha256, device=device,
                                     precision=precision, batch_size=batch_size, background=background,
                                     static_bg=static_bg, work_shape=work_shape,
                                     residual_pass=residual_pass)
            write(job, a, b, w, blank_frames(block))
            total += int(np.prod(block.shape[:-2]))
        return total
    work = tuple(work_shape or src.shape[-2:])
    # Tasks of one worker process that share a device take turns: each pipeline sizes its
    # batches to the card, and two at once would not fit.
    with _device_lock(str(separator.device)):
        kernel = DeviceKernel(separator, sig_shape=src.shape[-2:], work_shape=work,
                              background=background, static_bg=static_bg, dtype=src.dtype,
                              batch_size=device_batch_size(separator, work, batch_size),
                              residual_pass=residual_pass)
        return sum(run_pipeline(jobs, read=lambda job: src[job.region], kernel=kernel, write=write))


_DEVICE_LOCKS: dict[str, threading.Lock] = {}
_DEVICE_LOCKS_GUARD = threading.Lock()


def _device_lock(device: str) -> threading.Lock:
    with _DEVICE_LOCKS_GUARD:
        return _DEVICE_LOCKS.setdefault(device, threading.Lock())


_STATIC_CACHE: dict[tuple[str, str], np.ndarray] = {}


def _static_background(out_path: str, token: str) -> np.ndarray:
    """Read once per process and run; ``token`` (its hash) tells runs into the same path apart."""
    import zarr

    key = (out_path, token)
    if key not in _STATIC_CACHE:
        _STATIC_CACHE.clear()
        _STATIC_CACHE[key] = zarr.open_array(f"{out_path}/{STATIC}", mode="r")[...]
    return _STATIC_CACHE[key]


# --------------------------------------------------------------------------- client side

def trial_pattern(src) -> np.ndarray:
    """The first pattern of the map that is not blank (the first one if all are), as (1, sy, sx)."""
    nav_ndim = src.ndim - 2
    first = np.asarray(src[(0,) * nav_ndim])[None]
    if not blank_frames(first).any():
        return first
    block = np.asarray(src[tuple(slice(0, c) for c in src.chunks[:nav_ndim])])
    stack = block.reshape((-1,) + block.shape[-2:])
    kept = np.flatnonzero(~blank_frames(stack))
    return stack[kept[:1]] if kept.size else first


def _chunk_sum(block: np.ndarray) -> np.ndarray:
    """Float64 sum ``(1, ..., sy, sx)`` of a chunk's patterns that are not blank (one pass)."""
    nav_ndim = block.ndim - 2
    flat = block.reshape((-1,) + block.shape[-2:])
    kept = ~blank_frames(flat)
    total = np.add.reduce(flat if kept.all() else flat[kept], axis=0, dtype=np.float64)
    return total.reshape((1,) * nav_ndim + block.shape[-2:])


def _chunk_count(block: np.ndarray) -> np.ndarray:
    nav_ndim = block.ndim - 2
    kept = ~blank_frames(block.reshape((-1,) + block.shape[-2:]))
    return np.full((1,) * nav_ndim, np.count_nonzero(kept), np.int64)


def mean_of_non_blank(patterns):
    """Dask graph of the mean pattern (float64) over the frames that are not blank (zeros if all
    are blank): a dropped frame must not darken the map's static background."""
    import dask.array as da

    nav_ndim = patterns.ndim - 2
    nav_axes = tuple(range(nav_ndim))
    grid = tuple((1,) * n for n in patterns.numblocks[:nav_ndim])
    total = patterns.map_blocks(_chunk_sum, chunks=grid + patterns.chunks[nav_ndim:], dtype=np.float64,
                                meta=np.empty((0,) * patterns.ndim, np.float64)).sum(axis=nav_axes)
    count = patterns.map_blocks(_chunk_count, drop_axis=[nav_ndim, nav_ndim + 1], chunks=grid,
                                dtype=np.int64, meta=np.empty((0,) * nav_ndim, np.int64)).sum()
    return total / da.maximum(count, 1)


def load_checked(checkpoint: str | None):
    """Load the model once in this process (on the CPU) to fail fast (exit 2) on a missing or
    corrupt checkpoint; returns it and its sha256."""
    import kdeconv.model

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(f"checkpoint not found: {checkpoint}")
    separator = kdeconv.model.load_separator(checkpoint, device="cpu")
    return separator, separator.sha256


# Smaller patterns carry too few Kikuchi bands to separate (and the default U-Net would see
# mostly padding: it pads each side to a multiple of 32).
MIN_SIDE = 16


def check_model_on(separator, patterns: np.ndarray, background: dict, checkpoint_label: str,
                   work_shape: tuple[int, int] | None = None) -> None:
    """Run the model on one pattern: a shape the checkpoint cannot take is the user's input error."""
    if min(patterns.shape[-2:]) < MIN_SIDE:
        raise InputError(f"checkpoint {checkpoint_label} cannot take patterns of shape "
                         f"{tuple(patterns.shape[-2:])}: each side must be at least {MIN_SIDE} px")
    trial = preprocess_patterns(patterns, {**background, "static": "none"}, work_shape=work_shape)
    try:
        a, b, w = separator.separate(trial)
    except InputError:
        raise
    except (RuntimeError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"checkpoint {checkpoint_label} cannot separate patterns of shape "
                         f"{patterns.shape[-2:]}: {first}") from None
    if np.shape(a) != trial.shape:
        raise InputError(f"checkpoint {checkpoint_label} returns shape {np.shape(a)[-2:]} "
                         f"for patterns of shape {patterns.shape[-2:]}")
    if not all(np.isfinite(np.asarray(x, dtype=np.float32)).all() for x in (a, b, w)):
        raise InputError(f"checkpoint {checkpoint_label} returns NaN or inf for a pattern of the "
                         "map: the model is unusable (a diverged training run?)")


def named_shipped_model(config: SeparateConfig) -> SeparateConfig:
    """``config`` with the broad-looks or small-pattern model as its checkpoint when ``model``
    names it (refused when that model is not installed)."""
    import kdeconv.model as model

    named = {"broad_looks": model.BROAD_LOOKS_CHECKPOINT, "small_patterns": model.SMALL_PATTERNS_CHECKPOINT}
    if config.checkpoint is None and config.model in named:
        path = Path(named[config.model])
        if not path.is_file():
            raise InputError(f"model {config.model!r} is not installed with this kdeconv ({path} is missing)")
        return config.model_copy(update={"checkpoint": str(path)})
    return config


def pick_shipped_model(config: SeparateConfig, src, plan: ModelInputPlan, echo
                       ) -> tuple[SeparateConfig, dict[str, Any] | None]:
    """With no checkpoint and ``model`` "auto": the shipped model for the map's pattern size,
    weighed against the broad-looks model on a window of ``src`` (kdeconv.separate.model_choice),
    said in one line, and ``config`` with it as its checkpoint when it is not the default; else
    ``config`` as it is and None."""
    if config.checkpoint is not None or config.model != "auto":
        return config, None
    start = time.perf_counter()
    choice = choose_shipped_model(src, plan.background, plan.work_shape, device=config.device,
                                  precision=config.precision, batch_size=config.batch_size,
                                  residual_pass=config.residual_pass, separate_block=separate_block,
                                  pattern_shape=plan.screen_shape)
    choice["seconds"] = round(time.perf_counter() - start, 2)
    echo(describe_model_choice(choice))
    if choice["checkpoint"]:
        config = config.model_copy(update={"checkpoint": choice["checkpoint"]})
    return config, choice


def resume_key(map_path: Path | None, src, sha256: str, config: SeparateConfig,
               map_created: str | None = None, plan: ModelInputPlan | None = None,
               precision: str | None = None) -> dict[str, Any]:
    """What must match for a rerun to reuse finished chunks (a re-ingested map does not).

    ``precision``: what the tasks run at (``run_precision``), ``config.precision`` when None.
    """
    return {"map": str(map_path.resolve()) if map_path is not None else None, "map_created": map_created,
            "shape": list(src.shape), "dtype": str(src.dtype),
            "chunks": list(src.chunks), "checkpoint_sha256": sha256,
            "batch_size": config.batch_size, "precision": precision or config.precision,
            "background": plan.background if plan else config.background.model_dump(mode="json"),
            "work_shape": list(plan.work_shape if plan else src.shape[-2:]),
            "residual_pass": config.residual_pass,
            # the fit rewrites chunks in place: a rerun with other fit settings starts again
            "neighbour_fit": config.neighbour_fit.model_dump() if config.neighbour_fit.enabled else False}


def _open_existing(staging: Path, key: dict[str, Any]):
    """The staging store of an earlier run of the same command, or None (then start over)."""
    needed = ("A", "B", "weights", BLANK, DONE) + ((STATIC,) if key["background"]["static"] != "none" else ())
    return resume.reopen(staging, key, needed)


def create_store(staging: Path, src, source: dict, key, config: SeparateConfig, sha256: str,
                 model_normalization: dict | None = None, claim_rule: dict | None = None,
                 plan: ModelInputPlan | None = None):
    """The separated store's arrays (chunked like ``src``: shape, dtype and nav chunks), attrs
    (``source``: what is known of the map) and ledger, empty."""
    nav_shape, sig_shape = tuple(src.shape[:-2]), tuple(src.shape[-2:])
    nav_chunks = tuple(src.chunks[:-2])
    group = resume.create(staging, store_attrs(
        "separated", config, source=dict(source), map_store=key["map"], checkpoint_sha256=sha256,
        preprocessing={"background": key["background"],
                       "background_decision": plan.decision if plan else {},
                       "working_size": plan.working_record() if plan else {},
                       "model_input": "float32 per pattern in [0, 1]; the model applies the mask "
                                      "and normalisation recorded in its checkpoint",
                       "model_normalization": model_normalization or {}},
        output_scaling=("float [0, 1] -> full dtype range" if np.dtype(src.dtype).kind in "ui"
                        else "float [0, 1]"),
        claim_rule=claim_rule, precision=key["precision"]), key)
    for name in ("A", "B"):
        group.create_array(name, shape=src.shape, chunks=nav_chunks + sig_shape, dtype=src.dtype,
                           fill_value=0, compressors=_pattern_compressors())
    group.create_array("weights", shape=nav_shape + (2,), chunks=nav_chunks + (2,), dtype="float32",
                       fill_value=np.nan)
    group.create_array(BLANK, shape=nav_shape, chunks=nav_chunks, dtype="bool", fill_value=False)
    resume.add_ledger(group, tuple(-(-n // c) for n, c in zip(nav_shape, nav_chunks)))
    if key["background"]["static"] != "none":
        seen = screen_shape(sig_shape, key["background"])  # a round screen's square, or the pattern
        group.create_array(STATIC, shape=seen, chunks=seen, dtype="float32", fill_value=np.nan)
    return group


def _pattern_compressors():
    """The map store's codec (fast lossless LZ4 + bitshuffle) when the io stage provides it."""
    try:
        from kdeconv.io.ingest import map_compressors
    except ImportError:
        return "auto"
    return map_compressors()


@contextlib.contextmanager
def open_separate_client(cluster: ClusterConfig, device: str, echo=None, client=None):
    """``client`` when given, else a client for ``device``: LocalCUDACluster (one GPU per worker)
    when dask-cuda is there."""
    from kdeconv.cluster import open_client
    from kdeconv.model.device import cuda_available

    if client is not None:
        yield client
        return
    remote = cluster.scheduler_address or cluster.scheduler_file
    if not remote and device in ("auto", "cuda") and cuda_available():
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            LocalCUDACluster = None
        if LocalCUDACluster is not None:
            from distributed import Client

            from kdeconv.cluster import sigint_ignored

            with sigint_ignored():  # Ctrl-C is for this process: workers must not print tracebacks
                cuda_cluster = LocalCUDACluster(threads_per_worker=cluster.threads_per_worker or 1,
                                                resources={"GPU": 1})
            with cuda_cluster, Client(cuda_cluster) as client:
                if echo is not None:
                    echo(f"LocalCUDACluster: {len(cuda_cluster.workers)} worker(s), one GPU each; "
                         f"dashboard {client.dashboard_link}")
                yield client
            return
    with open_client(cluster, echo=echo) as client:
        yield client


def check_device(device: str, precision: str) -> None:
    """The workers' device and precision rules, checked here first (cuda must exist, fp16 needs
    CUDA) so that no worker starts for nothing."""
    import torch

    from kdeconv.model.device import cuda_available, resolve_device
    from kdeconv.model.precision import resolve_precision

    if device == "cuda":
        resolve_device("cuda")
    resolve_precision(precision, torch.device("cuda" if device != "cpu" and cuda_available() else "cpu"))


def run_precision(client, device: str, precision: str) -> str:
    """The one precision every task runs at: ``precision`` itself, or what ``auto`` resolves to
    on the workers of ``client`` (on this process when None). Workers that resolve it differently
    (a bf16 GPU node beside an fp32 CPU node) are refused: one map would mix chunks of both."""
    from kdeconv.separate.worker import resolved_precision

    if precision != "auto":
        return precision
    found = client.run(resolved_precision, device, precision) if client is not None else {}
    kinds = sorted(set(found.values())) or [resolved_precision(device, precision)]
    if len(kinds) > 1:
        means = ", ".join(f"{kind} on {sum(v == kind for v in found.values())} worker(s)" for kind in kinds)
        raise InputError(f"precision auto means {means}: pass --precision fp32 or bf16 so that every "
                         "chunk of the map is computed alike")
    return kinds[0]


# Chunks per task of the device pipeline: enough tasks per worker to balance several GPUs, few
# enough that each task's pipeline runs long between its fill and drain.
RANGE_TASKS_PER_WORKER = 4
MAX_RANGE_CHUNKS = 64


def _ranges(pending: list[tuple[int, ...]], workers: int) -> list[list[tuple[int, ...]]]:
    size = max(1, min(MAX_RANGE_CHUNKS, -(-len(pending) // (RANGE_TASKS_PER_WORKER * max(1, workers)))))
    return [pending[i:i + size] for i in range(0, len(pending), size)]


def _use_device_pipeline(pipeline: str, config: SeparateConfig, cluster: ClusterConfig | None,
                         client) -> bool:
    """Range tasks with the device pipeline: asked for, or CUDA workers (dask-cuda or
    ``--resources GPU=1``, or a local cluster on a machine with CUDA)."""
    if pipeline not in ("auto", "chunk", "device"):
        raise ValueError(f"pipeline must be auto, chunk or device, got {pipeline!r}")
    if pipeline != "auto":
        return pipeline == "device"
    if config.device == "cpu":
        return False
    from kdeconv.model.device import cuda_available

    remote = cluster is not None and (cluster.scheduler_address or cluster.scheduler_file)
    return _gpu_workers(client) or (not remote and cuda_available())


def _gpu_workers(client) -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any("GPU" in (w.get("resources") or {}) for w in workers)


def separate_map(map_path: str | Path, out_path: str | Path, config: SeparateConfig,
                 cluster: ClusterConfig | None = None, *, overwrite: bool = False, echo=None,
                 progress: bool | None = None, client=None, pipeline: str = "auto") -> SeparateResult:
    """Separate every pattern of the map store at ``map_path`` into the store ``out_path``, on
    ``client`` or on a cluster started from ``cluster`` once the output is locked and the model
    checked.

    ``pipeline``: "chunk" = one task per chunk with the numpy kernel (the CPU path); "device" =
    tasks over ranges of chunks running the device pipeline (``kdeconv.separate.pipeline``) on
    whatever device the workers resolve, the CPU included; "auto" = "device" when the workers
    have CUDA, else "chunk". Both write the same numbers up to float rounding.
    """
    import dask
    import dask.array as da
    import zarr

    from kdeconv.cluster import Timer, compute

    echo = echo or (lambda *_: None)
    cluster = cluster or ClusterConfig()
    from kdeconv.cluster import check_cluster_config

    check_cluster_config(cluster)  # a malformed address or file: refused before the model loads
    map_path, out_path = Path(map_path), Path(out_path)
    map_group = open_store(map_path, kind="map", arrays=("patterns",))
    src = map_group["patterns"]
    if src.ndim not in (3, 4):
        raise InputError(f"{map_path}: patterns must be (n, sy, sx) or (ny, nx, sy, sx), got {src.shape}")
    nav_shape, nav_ndim = src.shape[:-2], src.ndim - 2
    total = int(np.prod(nav_shape))
    if total < 2:
        raise InputError(f"{map_path} holds {total} pattern(s); separate needs a map of at least 2 "
                         "(the map's mean pattern is its static background)")
    inputs = (map_path, config.checkpoint)
    nbytes = 2 * int(np.prod(src.shape)) * np.dtype(src.dtype).itemsize + total * 9
    # Locked before torch and the model load: a second run on this output is refused at once.
    staging = resume.begin(out_path, overwrite, inputs=inputs, nbytes=nbytes).resolve()

    label = config.checkpoint or "default model"
    try:
        check_device(config.device, config.precision)
        config = named_shipped_model(config)
        label = config.checkpoint or "default model"
        separator, sha256 = load_checked(config.checkpoint)
        plan = plan_model_input(src, getattr(separator, "meta", {}) or {}, config.background,
                                config.working_size)
        check_model_on(separator, trial_pattern(src), plan.background, label, plan.work_shape)
        config, model_choice = pick_shipped_model(config, src, plan, echo)
        if model_choice and model_choice["checkpoint"]:
            separator, sha256 = load_checked(config.checkpoint)
            plan = plan_model_input(src, getattr(separator, "meta", {}) or {}, config.background,
                                    config.working_size)
    except BaseException:
        release_output(out_path)
        raise
    normalization = dict(getattr(separator, "normalization", {}) or {})
    claim_rule = getattr(separator, "claim_rule", None)  # evaluate's rule for this model
    del separator
    echo(plan.describe())
    if plan.warning():
        echo(plan.warning())

    background, work_shape = plan.background, plan.work_shape
    nav_chunks = src.chunks[:-2]
    # Absolute paths in the graph: remote workers do not share this process's working directory.
    checkpoint = str(Path(config.checkpoint).resolve()) if config.checkpoint else None
    src_abs = zarr.open_array(str(map_path.resolve() / "patterns"), mode="r")
    patterns = da.from_zarr(src_abs, chunks=nav_chunks + src.shape[-2:])
    with open_separate_client(cluster, config.device, echo=echo, client=client) as client, \
            Timer() as timer:
        # `auto` resolved once, on the workers: the store records it, and a rerun that would
        # resolve it otherwise (another machine) does not resume into a mix of precisions.
        precision = run_precision(client, config.device, config.precision)
        echo(f"model precision: {precision}" + (" (auto)" if config.precision == "auto" else ""))
        key = resume_key(map_path, src, sha256, config, map_group.attrs.get("created"), plan, precision)
        leftover = staging.exists()
        group = _open_existing(staging, key)
        if leftover and group is None:
            echo(f"{staging.name}: an interrupted run with other settings (map, model, precision, "
                 "background or chunks); starting over")
        if group is None:  # created only now that the cluster is up
            group = create_store(staging, src, map_group.attrs.get("source", {}), key, config, sha256,
                                 normalization, claim_rule, plan)
            if model_choice is not None:
                group.attrs["model_choice"] = model_choice
        static = background["static"] != "none"
        # the vote ran before the cluster: said here beside the passes, not in the map's rate
        phases: dict[str, float] = {"model_vote": model_choice["seconds"]} \
            if model_choice and "window" in model_choice else {}
        if static and np.isnan(group[STATIC][0, 0]):
            with Timer() as phase:
                mean = compute(client, mean_of_non_blank(patterns), progress=progress)
                group[STATIC][...] = static_background_from_mean(mean, config.background.static_smooth_std,
                                                                 background=background)
            phases["static_background"] = round(phase.seconds, 2)
        static_token = hashlib.sha256(group[STATIC][...].tobytes()).hexdigest() if static else ""
        done = group[DONE][...]
        pending = [tuple(int(i) for i in idx) for idx in np.argwhere(done == 0)]
        # GPU workers (dask-cuda, or `dask worker --resources GPU=1`) take one task per GPU.
        gpu = config.device != "cpu" and _gpu_workers(client)
        separated = 0
        separation_start = time.perf_counter()
        if _use_device_pipeline(pipeline, config, cluster, client):
            ranges = _ranges(pending, len(client.scheduler_info().get("workers", {})) or 1)
            if ranges:
                echo(f"device pipeline: {len(ranges)} task(s) of up to {len(ranges[0])} chunk(s)")
            task = dask.delayed(_separate_range, pure=True)
            token = dask.base.tokenize(str(staging), key, static_token, pipeline)
            with dask.annotate(**({"resources": {"GPU": 1}} if gpu else {})):
                tasks = [task(chunk_ids, map_path=str(map_path.resolve() / "patterns"),
                              out_path=str(staging), checkpoint=checkpoint, sha256=sha256,
                              device=config.device, batch_size=config.batch_size,
                              background=background, static_token=static_token,
                              precision=precision, work_shape=work_shape, pipeline=pipeline,
                              residual_pass=config.residual_pass,
                              dask_key_name=f"kdeconv-separate-{token}-"
                                            + "-".join(map(str, chunk_ids[0])))
                         for chunk_ids in ranges]
            if tasks:
                separated = int(compute(client, dask.delayed(sum)(tasks), progress=progress))
            pending = []  # all handed to the range tasks
        with dask.annotate(**({"resources": {"GPU": 1}} if gpu else {})):
            counts = patterns.map_blocks(
                _separate_and_write, drop_axis=list(range(nav_ndim, nav_ndim + 2)),
                chunks=(1,) * nav_ndim, dtype=np.int64, meta=np.empty((0,) * nav_ndim, np.int64),
                out_path=str(staging), checkpoint=checkpoint, sha256=sha256,
                device=config.device, batch_size=config.batch_size, background=background,
                static_token=static_token, precision=precision,
                work_shape=work_shape, residual_pass=config.residual_pass)
            if pending and len(pending) == done.size:
                separated = int(compute(client, counts.sum(), progress=progress))
            elif pending:
                # Only the unfinished chunks: dask culls the reads of the finished ones.
                wanted = da.concatenate([counts.blocks[idx].ravel() for idx in pending]).sum()
                separated = int(compute(client, wanted, progress=progress))
        phases["separation"] = round(time.perf_counter() - separation_start, 2)
        if config.in_grain_claims and bool(np.all(group[DONE][...])):
            static_bg = group[STATIC][...] if STATIC in group else None
            found = in_grain_claims(group["weights"][...], map_path, background, static_bg=static_bg,
                                    client=client, progress=progress)
            record = write_in_grain_claims(group, map_path, background, found=found)
            phases["in_grain_claims"] = record.get("seconds", 0.0)
            echo(describe_in_grain_claims(record, group.attrs.get("claim_rule")))
            warning = unfamiliar_warning(record) if record.get("bar") is not None \
                else mostly_mixed_warning(group["weights"][...])
            if warning is not None:
                echo(warning)
            if config.neighbour_fit.enabled:
                fitted = write_neighbour_fit(group, str(staging), patterns, background,
                                             static_bg if static else None, found, client, progress,
                                             settings=settings_for(config.neighbour_fit))
                phases["neighbour_fit"] = fitted.get("seconds", 0.0)
                echo(describe_neighbour_fit(fitted))
    if separated and len(phases) > 1:
        echo("passes over the map: " + ", ".join(
            f"{name.replace('_', ' ')} {seconds:.1f} s" + (
                f" ({separated / seconds:,.0f} patterns/s)" if name == "separation" and seconds > 0 else "")
            for name, seconds in phases.items()))
    resume.require_complete(group, out_path)  # a worker vanished without raising: keep .partial
    blank = int(np.count_nonzero(group[BLANK][...]))
    group.attrs["blank_frames"] = blank
    resume.finish(staging, out_path)

    reports: list[Path] = []
    if config.panels:
        from kdeconv.separate.report import write_report

        reports = write_report(out_path, map_path, n_panels=config.panels)
    return SeparateResult(out=out_path, patterns=separated, total=total,
                          chunks_skipped=int(done.sum()), chunks=int(done.size),
                          seconds=timer.seconds, report_files=reports, blank_frames=blank,
                          background=plan.decision["mode"], mask=plan.background["mask"],
                          screen=tuple(plan.background["screen"]) if plan.background["screen"] else None,
                          work_shape=work_shape, precision=precision, phase_seconds=phases,
                          model_choice=model_choice)


def run(config: SeparateConfig | dict | str | Path, *, map_store: str | Path, out: str | Path,
        overwrite: bool = False, client=None, cluster: ClusterConfig | None = None,
        progress: bool | None = True, echo=print) -> SeparateResult:
    """Separate every pattern of the map store ``map_store`` into the separated store ``out``
    (``kdeconv.separate.run``; what ``kdeconv separate`` runs).

    ``config``: a ``SeparateConfig``, a dict or a YAML path. Runs on ``client``, else on a cluster
    started from ``cluster`` once the output is locked and the model checked (a local one by
    default, one GPU per worker with dask-cuda). Rerunning an interrupted run resumes it.
    """
    from kdeconv.config import coerce_config

    return separate_map(map_store, out, coerce_config(SeparateConfig, config), cluster, overwrite=overwrite,
                        echo=echo, progress=progress, client=client)
