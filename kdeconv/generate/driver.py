"""Dask/Zarr driver of ``kdeconv generate``: one task per chunk of pairs writes its own region.

Simulated sources first fill ``pure`` (one task per chunk of pure patterns, each pattern
simulated once), then the pair tasks read the pure patterns they need from it. Map sources read
the needed patterns straight from the map store. Tasks carry only the config and indices, so the
graph stays small, and each task holds at most ``chunk_size`` pairs plus their pure patterns.

A finished store is extended in place by a later run with a larger ``n`` and the same
config/seed (existing chunks are not rewritten; the first partly filled chunk is completed).
An interrupted run leaves ``OUT.partial``, which the next identical run resumes: every pure task
and every pair chunk marks itself done after its data (``kdeconv.io.resume``), so only unmarked
work is redone.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.generate import GenerateConfig, MapSource, SimulateSource
from kdeconv.errors import InputError
from kdeconv.generate.augment import AUGMENT_COLUMNS
from kdeconv.generate.chunk import (
    bin_patterns,
    build_pairs,
    build_raw_pairs,
    draw_pairs,
    nothing_to_prepare,
    pool_labels,
    prepare_pure,
    pure_geometry,
    resample_pairs,
)
from kdeconv.io import resume
from kdeconv.io.store import (
    EVERY_CHUNK_WRITTEN,
    check_not_input,
    lock_output,
    open_store,
    partial_path,
    release_output,
    store_attrs,
)
from kdeconv.preprocess import circular_mask, mask_geometry

__all__ = ["run", "GenerateResult", "SourcePlan", "plan_source", "check_output", "run_generate",
           "write_pair_chunk", "write_debug_panels"]

PURE_CHUNK = 128      # pure patterns simulated per task
PURE_STORE_CHUNK = 8  # per Zarr chunk: pair tasks read scattered pure patterns


@dataclass
class SourcePlan:
    kind: str
    pool_size: int
    raw_shape: tuple[int, int]      # pure pattern as read (map) or stored in `pure` (simulate)
    out_shape: tuple[int, int]      # pattern shape of C, A, B
    info: dict = field(default_factory=dict)
    indices: np.ndarray | None = None   # map: listed flat indices (pool order), else None


def _cfg_json(cfg: GenerateConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)


def _content_key(cfg: GenerateConfig) -> str:
    return json.dumps(cfg.content_key(), sort_keys=True)


def _shape_after(shape: tuple[int, int], cfg: GenerateConfig, binned: bool) -> tuple[int, int]:
    b = 1 if binned else cfg.preprocess.binning
    if shape[0] % b or shape[1] % b:
        raise InputError(f"binning {b} does not divide the pattern shape {shape[0]}x{shape[1]}")
    sy, sx = shape[0] // b, shape[1] // b
    if cfg.preprocess.crop is not None:
        t, bo, le, ri = cfg.preprocess.crop
        if min(t, bo, le, ri) < 0 or t + bo >= sy - 4 or le + ri >= sx - 4:
            raise InputError(f"crop {list(cfg.preprocess.crop)} does not fit a {sy}x{sx} pattern")
        sy, sx = sy - t - bo, sx - le - ri
    return sy, sx


def plan_source(cfg: GenerateConfig) -> SourcePlan:
    """Check the source and work out pool size and shapes (raises InputError on bad input)."""
    plan = _plan_source(cfg)
    mask_geometry(plan.out_shape, cfg.mask.radius)  # a mask larger than the pattern is an error
    return plan


def _plan_source(cfg: GenerateConfig) -> SourcePlan:
    src = cfg.source
    if isinstance(src, SimulateSource):
        if src.n_pure < 2:
            raise InputError("empty source: n_pure must be at least 2 to make pairs")
        shape = tuple(src.shape)
        phases = src.phase_sources()
        mixed_shape = _shape_after(shape, cfg, binned=True)
        plan = SourcePlan("simulate", src.n_pure, shape, tuple(cfg.preprocess.resample_to or mixed_shape),
                          {"kind": "simulate", "master": src.master.model_dump(mode="json"),
                           "phases": phase_names(cfg), "n_pure": src.n_pure,
                           "mixed_shape": list(mixed_shape)})
        for phase in phases:
            if phase.master.kind != "nickel":
                from kdeconv.simulate import load_master

                load_master(master_spec(phase.master, None))  # fail early on a bad file/phase
        return plan
    assert isinstance(src, MapSource)
    group = open_store(src.path, "map", arrays=("patterns",))
    arr = group["patterns"]
    if arr.ndim not in (3, 4):
        raise InputError(f"map store {src.path}: patterns must be (n, sy, sx) or (ny, nx, sy, sx)")
    nav = int(np.prod(arr.shape[:-2]))
    if nav == 0:
        raise InputError(f"empty source: map store {src.path} has no pattern")
    indices = None
    pool = nav
    if src.indices is not None:
        indices = np.unique(np.asarray(src.indices, dtype=np.int64))
        if indices[-1] >= nav:
            raise InputError(f"source index {int(indices[-1])} is outside the map ({nav} patterns)")
        pool = len(indices)
    if pool < 2:
        raise InputError("empty source: at least 2 pure patterns are needed to make pairs")
    raw_shape = tuple(int(s) for s in arr.shape[-2:])
    source_attrs = dict(group.attrs.get("source", {}))
    mixed_shape = _shape_after(raw_shape, cfg, binned=False)
    out_shape = tuple(cfg.preprocess.resample_to or mixed_shape)
    if cfg.pipeline == "raw_mix":
        spec = cfg.model_input
        if spec.static_background and not Path(spec.static_background).is_file():
            raise InputError(f"static background not found: {spec.static_background}")
        if cfg.preprocess.binning != 1 or cfg.preprocess.crop is not None:
            raise InputError("pipeline raw_mix takes the map's patterns as they are (no binning or crop)")
        out_shape = tuple(spec.work_shape) if spec.work_shape else raw_shape
    return SourcePlan("map", pool, raw_shape, out_shape,
                      {"kind": "map", "path": str(Path(src.path).resolve()), "pool_size": pool,
                       "map_nav_shape": list(arr.shape[:-2]), "map_dtype": str(arr.dtype),
                       "map_source": source_attrs, "mixed_shape": list(mixed_shape)}, indices)


def phase_names(cfg: GenerateConfig) -> list[str]:
    """A name per label: the phases of a simulated source, or the labels of a map source."""
    src = cfg.source
    if isinstance(src, MapSource):
        if src.labels is None:
            return []
        return list(src.label_names or [str(k) for k in range(max(src.labels) + 1)])
    names = []
    for phase in src.phase_sources():
        m = phase.master
        if m.kind == "library":
            names.append(str(m.phase))
        elif m.kind == "kinematic":
            names.append(m.phase.name if m.phase is not None else Path(m.cif).stem)
        elif m.kind == "emsoft":
            names.append(Path(m.path).stem)
        else:
            names.append("ni")
    return names


def master_spec(master, energy: float | None) -> dict:
    """The load_master spec of a phase at a drawn energy (NaN/None: the spec's own)."""
    spec = master.model_dump(mode="json")
    if energy is not None and np.isfinite(energy) and master.kind in ("library", "nickel", "emsoft"):
        spec["energy"] = float(energy)
    if master.kind == "library":
        from kdeconv.simulate.library import nearest_energy

        spec["energy"] = nearest_energy(master.phase, spec.get("energy") or 20.0)
    return spec


def projection_spec(spec: dict) -> dict:
    """The master spec whose arrays project pattern ``spec``: kikuchipy takes the master's energy
    nearest to the one asked for (the only one, for a master of one energy), so drawn energies
    that land on one master energy share one spec, one load and one projection call."""
    if spec.get("kind", "nickel") not in ("nickel", "emsoft") or spec.get("energy") is None:
        return spec
    base = {k: v for k, v in spec.items() if k != "energy"}
    grid = _energy_grid(json.dumps(base, sort_keys=True))
    if grid is None:
        return spec
    if grid == "single":
        return base
    return {**spec, "energy": float(grid.index2value(grid.value2index(float(spec["energy"]))))}


@functools.lru_cache(maxsize=16)
def _energy_grid(base_key: str):
    """The energy axis of a master with several energies, "single" for a master of one energy,
    None when it cannot be told."""
    from kdeconv.simulate import load_master

    try:
        signal = load_master(json.loads(base_key)).signal
        if not signal._has_multiple_energies:
            return "single"
        return signal.axes_manager["energy"]
    except (KeyError, AttributeError, ValueError):
        return None


# ---------------------------------------------------------------- tasks (run on workers)

def simulate_pure_chunk(staging: str, cfg_json: str, start: int, stop: int) -> int:
    """Simulate pure patterns ``start:stop`` into the ``pure*`` arrays of the staging store,
    then mark the task done in the ``pure_done`` ledger."""
    from kdeconv.io.store import open_for_writing
    from kdeconv.simulate import load_master, simulate_varied

    cfg = GenerateConfig.model_validate_json(cfg_json)
    src = cfg.source
    b = cfg.preprocess.binning
    quats, pcs, tilts, energies = pure_geometry(cfg, start, stop)
    labels = pool_labels(cfg, src.n_pure)
    labels = np.zeros(stop - start, np.int64) if labels is None else labels[start:stop]
    phases = src.phase_sources()
    shape = (src.shape[0] * b, src.shape[1] * b)
    pats = np.empty((stop - start,) + tuple(src.shape), np.float32)
    used = np.empty(stop - start, np.float32)
    specs = [master_spec(phases[label].master, energy) for label, energy in zip(labels, energies)]
    keys = [json.dumps(projection_spec(spec), sort_keys=True) for spec in specs]
    for key in sorted(set(keys)):  # one projection call per master array in the chunk
        rows = np.array([k == key for k in keys])
        master = load_master(json.loads(key))
        pats[rows] = bin_patterns(simulate_varied(master, quats[rows], pcs[rows], tilts[rows, 0],
                                                  tilts[rows, 1], shape), b)
        # The energy each pattern asked for, as its own master would have recorded it.
        used[rows] = [np.nan if e is None else float(e) for e in
                      (specs[k].get("energy", master.energy) for k in np.flatnonzero(rows))]
    group = open_for_writing(staging)
    values = {"pure": pats, "pure_rotation": quats.astype(np.float32), "pure_pc": pcs.astype(np.float32),
              "pure_tilt": tilts.astype(np.float32), "pure_phase": labels.astype(np.int16),
              "pure_energy": used}
    arrays = _open_arrays(group, tuple(values) + (PURE_LEDGER,))
    _write_all(arrays, slice(start, stop), values)
    if arrays[PURE_LEDGER] is not None:
        resume.mark_done(group, start // PURE_CHUNK, PURE_LEDGER, ledger=arrays[PURE_LEDGER])
    return stop - start


def _read_pure(group, cfg: GenerateConfig, positions: np.ndarray, staging: str | None = None):
    """Pure patterns at pool ``positions``: (prepared stack, source indices, quaternions).

    ``group``: the staging store's arrays (``pure``, ``pure_rotation``, ``pool_indices``);
    ``staging``: its path, which keys the cache of the simulated pool's decoded chunks.
    """
    uniq, inverse = np.unique(positions, return_inverse=True)
    if isinstance(cfg.source, SimulateSource):
        pure = group["pure"]
        raw = rows_at(pure, uniq, _stamped(staging, "pure")) if staging is not None else pure.oindex[uniq]
        rotation = group["pure_rotation"]
        quats = (rotation.oindex[uniq] if staging is None else
                 _CHUNKS.get(_stamped(staging, "pure_rotation"), lambda: rotation[:])[uniq])
        pats = prepare_pure(raw, cfg, binned=True)
        return pats[inverse], uniq[inverse], quats[inverse]
    src = cfg.source
    idx = group["pool_indices"].oindex[uniq] if src.indices is not None else uniq
    quats = np.full((len(positions), 4), np.nan, np.float32)
    if nothing_to_prepare(cfg, binned=False):  # one gather, in pair order
        return map_patterns(src.path, idx[inverse]), idx[inverse], quats
    return prepare_pure(map_patterns(src.path, idx), cfg, binned=False)[inverse], idx[inverse], quats


# Decoded chunks kept per worker process, of the map (map source) or of the simulated pool: the
# pairs of a group draw from one window of it, so consecutive tasks read the same chunks; without
# the cache each task decoded them all again (a simulated pool of a few thousand patterns: every
# task read all of it). Least recently used chunks go first.
CHUNK_CACHE_BYTES = 512 * 2**20


class _ChunkCache:
    def __init__(self, budget: int):
        self.budget = budget
        self.blocks: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.lock = threading.Lock()

    def get(self, key, load):
        with self.lock:
            block = self.blocks.get(key)
            if block is not None:
                self.blocks.move_to_end(key)
                return block
        block = np.asarray(load())
        block.setflags(write=False)
        with self.lock:
            if key not in self.blocks:
                self.blocks[key] = block
                self.nbytes += block.nbytes
            while self.nbytes > self.budget and len(self.blocks) > 1:
                _, old = self.blocks.popitem(last=False)
                self.nbytes -= old.nbytes
        return block

    def clear(self):
        with self.lock:
            self.blocks.clear()
            self.nbytes = 0


_CHUNKS = _ChunkCache(CHUNK_CACHE_BYTES)


def _stamped(store: str | Path, name: str) -> tuple:
    """(store, array, mtime and size of its metadata): a rewritten array is another array."""
    import os

    store = str(Path(store).resolve())
    meta = os.stat(os.path.join(store, name, "zarr.json"))
    return store, name, meta.st_mtime_ns, meta.st_size


@functools.lru_cache(maxsize=4)
def _map_array(path: str, stamp: tuple):
    import zarr

    return zarr.open_group(path, mode="r")["patterns"]


def map_patterns(path: str | Path, flat: np.ndarray) -> np.ndarray:
    """The map's patterns at flat navigation indices ``flat`` (any order, repeats allowed), read
    whole chunk by whole chunk through this process's cache of decoded chunks."""
    key = _stamped(path, "patterns")
    return rows_at(_map_array(key[0], key), flat, key)


def rows_at(arr, flat: np.ndarray, key: tuple | None = None) -> np.ndarray:
    """``arr``'s patterns at flat navigation indices ``flat`` (any order, repeats allowed), read
    whole chunk by whole chunk; with ``key`` (naming the array: ``_stamped``) each chunk is
    decoded once per process and kept in its cache."""
    flat = np.asarray(flat, np.int64)
    nav = arr.shape[:-2]
    index = np.unravel_index(flat, nav)
    chunks = arr.chunks[:len(nav)]
    grid = [-(-n // c) for n, c in zip(nav, chunks)]
    keys = np.ravel_multi_index(tuple(i // c for i, c in zip(index, chunks)), grid)
    out = np.empty((len(flat),) + tuple(arr.shape[-2:]), dtype=arr.dtype)
    for chunk in np.unique(keys):
        rows = keys == chunk
        corner = [int(b) * c for b, c in zip(np.unravel_index(chunk, grid), chunks)]
        region = tuple(slice(o, o + c) for o, c in zip(corner, chunks))
        block = (arr[region] if key is None
                 else _CHUNKS.get(key + (int(chunk),), lambda region=region: arr[region]))
        out[rows] = block[tuple(i[rows] - o for i, o in zip(index, corner))]
    return out


PAIR_ARRAYS = ("C", "A", "B", "masked", "weights", "index_a", "index_b", "rotation_a", "rotation_b",
               "phase_a", "phase_b", "augment")


def write_pair_chunk(staging: str, cfg_json: str, start: int, stop: int, pool_size: int,
                     _deps: Any = None) -> int:
    """Build pairs ``start:stop`` (within one chunk) and write them into the staging store (one
    region), then mark the chunk done in the ledger."""
    from kdeconv.io.store import open_for_writing

    cfg = GenerateConfig.model_validate_json(cfg_json)
    group = open_for_writing(staging)
    reads = ("pure", "pure_rotation") if isinstance(cfg.source, SimulateSource) \
        else ("pool_indices",) if cfg.source.indices is not None else ()
    arrays = _open_arrays(group, PAIR_ARRAYS + reads + (resume.LEDGER,))
    shape = tuple(arrays["C"].shape[1:])
    if cfg.preprocess.resample_to is not None:  # mixed at the source's shape, resampled after
        shape = tuple(group.attrs["source"]["mixed_shape"])
    labels = _pool_labels_cached(cfg_json, pool_size)
    draws = draw_pairs(cfg, start, stop, pool_size, square=shape[0] == shape[1], labels=labels)
    n = stop - start
    both = np.concatenate([draws.pos_a, draws.pos_b])
    pats, index, quats = _read_pure(arrays, cfg, both, staging)
    if cfg.pipeline == "raw_mix":
        targets = _pair_targets(cfg_json, cfg.source, both)
        out = build_raw_pairs(cfg, draws, pats[:n], pats[n:],
                              _static_background(cfg.model_input.static_background),
                              *((None, None) if targets is None else (targets[:n], targets[n:])),
                              start=start)
    else:
        mask = circular_mask(shape, cfg.mask.radius)
        out = build_pairs(cfg, start, draws, pats[:n], pats[n:], mask)
        if cfg.preprocess.resample_to is not None:
            out = resample_pairs(out, tuple(cfg.preprocess.resample_to))
    label = np.zeros(2 * n, np.int16) if labels is None else labels[both].astype(np.int16)
    _write_all(arrays, slice(start, stop), {
        "C": out["C"], "A": out["A"], "B": out["B"], "masked": out["masked"],
        "weights": draws.weights, "index_a": index[:n], "index_b": index[n:],
        "rotation_a": quats[:n], "rotation_b": quats[n:], "phase_a": label[:n],
        "phase_b": label[n:], "augment": draws.augment})
    if arrays.get(resume.LEDGER) is not None:
        resume.mark_done(group, start // arrays["C"].chunks[0], ledger=arrays[resume.LEDGER])
    return n


def _pair_targets(cfg_json: str, src, positions: np.ndarray) -> np.ndarray | None:
    """The given targets (``MapSource.targets``) of pool ``positions``, or None."""
    if getattr(src, "targets", None) is None:
        return None
    path = Path(src.targets).resolve()
    key = _stamped(path.parent, path.name)
    rows = _pool_order(cfg_json)[np.asarray(positions, np.int64)]
    return rows_at(_zarr_array(str(path), key), rows, key)


@functools.lru_cache(maxsize=2)
def _pool_order(cfg_json: str) -> np.ndarray:
    # pool position -> position in the config's `indices` (the pool is the indices sorted)
    indices = GenerateConfig.model_validate_json(cfg_json).source.indices
    return np.argsort(np.asarray(indices, np.int64), kind="stable")


@functools.lru_cache(maxsize=4)
def _zarr_array(path: str, stamp: tuple):
    import zarr

    return zarr.open_array(path, mode="r")


@functools.lru_cache(maxsize=2)
def _static_background(path: str | None) -> np.ndarray | None:
    return None if path is None else np.load(path).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _pool_labels_cached(cfg_json: str, pool_size: int):
    # once per worker process and config: a permutation of the pool
    return pool_labels(GenerateConfig.model_validate_json(cfg_json), pool_size)


def _open_arrays(group, names: tuple[str, ...]) -> dict:
    """The arrays ``names`` of ``group`` (None where absent), their metadata read concurrently:
    one event-loop round trip per task, not one per array (a dozen made a third of a task)."""
    import asyncio

    import zarr
    from zarr.core.sync import sync

    try:
        async_group = group._async_group
    except AttributeError:  # zarr without AsyncGroup: one by one, the same arrays
        return {name: group[name] if name in group else None for name in names}

    async def get(name):
        try:
            return await async_group.getitem(name)
        except KeyError:
            return None

    async def open_all():
        return await asyncio.gather(*(get(name) for name in names))

    return {name: None if found is None else zarr.Array(found)
            for name, found in zip(names, sync(open_all()))}


def _write_all(arrays: dict, region: slice, values: dict[str, np.ndarray]) -> None:
    """Write one region of several arrays concurrently (one event-loop round trip, not ten)."""
    import asyncio

    from zarr.core.sync import sync

    try:
        targets = {name: arrays[name]._async_array for name in values}
    except AttributeError:  # zarr without AsyncArray: plain writes, same bytes
        for name, value in values.items():
            arrays[name][region] = value
        return

    async def write():
        await asyncio.gather(*(targets[name].setitem(region, value) for name, value in values.items()))

    sync(write())


def _total(counts) -> int:
    return int(sum(counts))


# ---------------------------------------------------------------- store management

PURE_LEDGER = "pure_done"  # one marker per pure task (PURE_CHUNK patterns); pairs use resume.LEDGER


def _create_store(staging: Path, cfg: GenerateConfig, plan: SourcePlan, n: int, chunk: int):
    group = resume.create(staging, _attrs(cfg, plan, n_complete=0, pure_complete=False), _resume_key(cfg))
    sy, sx = plan.out_shape
    k = len(AUGMENT_COLUMNS)

    def arr(name, shape, chunks, dtype, fill=0, **kw):
        group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, **kw)

    # Uncompressed: stretched to the full 16 bits, pairs keep their noise in every bit plane and
    # LZ4 + bitshuffle saved 3-5% of the bytes for 3x the CPU of the whole write.
    for name in ("C", "A", "B"):
        arr(name, (n, sy, sx), (chunk, sy, sx), "uint16", compressors=None)
    arr("weights", (n, 2), (chunk, 2), "float32")
    arr("index_a", (n,), (chunk,), "int64", -1)
    arr("index_b", (n,), (chunk,), "int64", -1)
    arr("rotation_a", (n, 4), (chunk, 4), "float32", float("nan"))
    arr("rotation_b", (n, 4), (chunk, 4), "float32", float("nan"))
    arr("phase_a", (n,), (chunk,), "int16", 0)
    arr("phase_b", (n,), (chunk,), "int16", 0)
    arr("masked", (n,), (chunk,), "bool", False)
    arr("augment", (n, k), (chunk, k), "float32")
    if plan.kind == "simulate":
        p = plan.pool_size
        ry, rx = plan.raw_shape
        # Uncompressed: float32 simulated patterns shrink only ~10% and zstd was 2/3 of the task.
        arr("pure", (p, ry, rx), (PURE_STORE_CHUNK, ry, rx), "float32", compressors=None)
        arr("pure_rotation", (p, 4), (PURE_CHUNK, 4), "float32", float("nan"))
        arr("pure_pc", (p, 3), (PURE_CHUNK, 3), "float32", float("nan"))
        arr("pure_tilt", (p, 2), (PURE_CHUNK, 2), "float32", float("nan"))
        arr("pure_phase", (p,), (PURE_CHUNK,), "int16", 0)
        arr("pure_energy", (p,), (PURE_CHUNK,), "float32", float("nan"))
        resume.add_ledger(group, (-(-p // PURE_CHUNK),), PURE_LEDGER)
    elif plan.indices is not None:
        group.create_array("pool_indices", data=plan.indices,
                           chunks=(max(1, min(len(plan.indices), 1 << 20)),))
    resume.add_ledger(group, (-(-n // chunk),))
    return group


def _attrs(cfg: GenerateConfig, plan: SourcePlan, n_complete: int, pure_complete: bool) -> dict:
    detector = cfg.pairs_detector()  # fixed geometry: evaluate indexes with it, as simulate-map's
    return store_attrs(
        "pairs", config=cfg, source=plan.info, pipeline=cfg.pipeline, seed=cfg.seed, n=cfg.n,
        n_complete=n_complete, pure_complete=pure_complete, content_key=_content_key(cfg),
        augment_columns=list(AUGMENT_COLUMNS), pattern_shape=list(plan.out_shape),
        phase_names=phase_names(cfg) or ["0"],
        pool_size=plan.pool_size,
        formulas="see kdeconv.mixing (pipelines) and kdeconv.generate.augment (realism); "
                 "uint16 = round(clip(x, 0, 1) * 65535)",
        rotation_meaning=("orientation (w, x, y, z) of the pure pattern as simulated, before the "
                          "flip/rot90 recorded in 'augment'; NaN for map sources"),
        index_meaning=("rows of 'pure' (with pure_rotation, pure_pc, pure_tilt = camera, sample)"
                       if plan.kind == "simulate" else "flat indices into the map's patterns"),
        **({"detector": detector.to_attrs()} if detector is not None else {}))


def _resume_key(cfg: GenerateConfig) -> dict:
    """What must match for a rerun to reuse the pairs written (n and chunk_size do not)."""
    return {"content_key": cfg.content_key()}


def _open_existing(path: Path, cfg: GenerateConfig):
    from kdeconv.io.store import open_for_writing

    group = open_for_writing(path)
    return group, group.attrs.get("content_key") == _content_key(cfg)


def _pair_range(index: int, chunk: int, base: int, n: int) -> tuple[int, int]:
    """Pairs of ledger chunk ``index`` still to write: those at or after ``base`` (the pairs of
    the finished store that this run extends)."""
    return max(index * chunk, base), min((index + 1) * chunk, n)


def _resize(group, n: int, chunk: int) -> None:
    """Fit the pair arrays and their ledger to ``n`` pairs; a chunk that had fewer pairs than it
    now holds is to do again (from ``n_complete`` on, see ``_pair_range``)."""
    previous = group["C"].shape[0]
    if previous == n:
        return
    for name in group.array_keys():
        if name.startswith("pure") or name in ("pool_indices", resume.LEDGER):
            continue
        a = group[name]
        a.resize((n,) + tuple(a.shape[1:]))
    resume.resize_ledger(group, (-(-n // chunk),))
    if n > previous and previous % chunk:
        group[resume.LEDGER][previous // chunk] = 0


def _extend_finished(out: Path, staging: Path, cfg: GenerateConfig, plan: SourcePlan):
    """Turn the finished store ``out`` into the staging store of a run that appends to it."""
    group = _open_existing(out, cfg)[0]
    chunk = group["C"].chunks[0]
    n_old = int(group.attrs.get("n_complete", group["C"].shape[0]))
    # Written into the finished store before it moves: a kill at any point leaves either the
    # finished store (with a harmless ledger) or a staging store that resumes.
    if resume.LEDGER not in group:  # made before ledgers: every chunk up to n_complete is done
        grid = -(-group["C"].shape[0] // chunk)
        resume.add_ledger(group, (grid,), done=np.ones(grid, np.uint8))
    if plan.kind == "simulate" and PURE_LEDGER not in group:
        grid = -(-plan.pool_size // PURE_CHUNK)
        resume.add_ledger(group, (grid,), PURE_LEDGER, done=np.ones(grid, np.uint8))
    group.attrs.update({resume.RESUME_KEY: _resume_key(cfg), "n_complete": n_old})
    if staging.exists():
        shutil.rmtree(staging)
    out.rename(staging)


def check_output(cfg: GenerateConfig, out: str | Path, overwrite: bool) -> None:
    """Refuse, before any work, an output we may not write (InputError with one line), and take
    the output's lock."""
    out = Path(out)
    inputs = _inputs(cfg)
    check_not_input(out, inputs)
    if not out.parent.exists():
        raise InputError(f"output folder does not exist: {out.parent}")
    if out.exists() and not overwrite:
        open_store(out, "pairs", arrays=("C", "A", "B", "weights"))
        if not _open_existing(out, cfg)[1]:
            raise InputError(f"output already exists with a different config or seed: {out} "
                             "(use --overwrite to replace it)")
        lock_output(out)
    else:
        resume.begin(out, overwrite, inputs=inputs)
    staging = partial_path(out)
    if staging.exists() and not overwrite:
        _check_interrupted_append(staging, cfg)


def _check_interrupted_append(staging: Path, cfg: GenerateConfig) -> None:
    """A staging store that extends a finished one holds finished pairs: never drop it silently."""
    try:
        group = open_store_unchecked(staging)
        n_complete = int(group.attrs.get("n_complete", 0))
        same = group.attrs.get("content_key") == _content_key(cfg)
    except Exception:
        return
    if n_complete and not same:
        raise InputError(f"{staging} holds an interrupted extension of {n_complete} finished pairs "
                         "made with another config or seed: rerun with that config to finish it, "
                         "or use --overwrite to replace it")


def open_store_unchecked(path: Path):
    import zarr

    return zarr.open_group(str(path), mode="r")


def _inputs(cfg: GenerateConfig) -> tuple:
    src = cfg.source
    inputs = [getattr(src, "path", None)]
    master = getattr(src, "master", None)
    inputs.append(getattr(master, "path", None) if master is not None else None)
    return tuple(p for p in inputs if p)


def _nbytes(cfg: GenerateConfig, plan: SourcePlan) -> int:
    sy, sx = plan.out_shape
    per_pair = 3 * sy * sx * 2 + 8 + 16 + 32 + 1 + 4 * len(AUGMENT_COLUMNS)
    pure = plan.pool_size * int(np.prod(plan.raw_shape)) * 4 if plan.kind == "simulate" else 0
    return cfg.n * per_pair + pure


def run_generate(cfg: GenerateConfig, out: str | Path, client, *, overwrite: bool = False,
                 echo=print, progress: bool | None = None) -> dict:
    """Generate ``cfg.n`` pairs into ``out``; returns {"new": pairs written, "n": total, ...}.

    Resumable (``kdeconv.io.resume``): each pure task and each pair chunk marks itself done after
    its data, so a rerun of an interrupted command redoes only unmarked chunks.
    """
    import dask

    from kdeconv.cluster import Timer, compute

    out = Path(out)
    plan = plan_source(cfg)
    check_output(cfg, out, overwrite)
    staging = partial_path(out)
    key = _resume_key(cfg)
    extending = out.exists() and not overwrite
    if extending:
        finished = _open_existing(out, cfg)[0]
        base = int(finished.attrs.get("n_complete", finished["C"].shape[0]))
        if cfg.n <= base:
            echo(f"{out} already holds {base} pairs (asked for {cfg.n}); nothing to do")
            release_output(out)
            return {"new": 0, "n": base, "seconds": 0.0}
        _extend_finished(out, staging, cfg, plan)
    else:
        staging = resume.begin(out, overwrite, inputs=_inputs(cfg), nbytes=_nbytes(cfg, plan))
    needed = ("C", "A", "B", "weights", resume.LEDGER) + ((PURE_LEDGER,) if plan.kind == "simulate" else ())
    group = resume.reopen(staging, key, needed)
    if group is not None:
        base = int(group.attrs.get("n_complete", 0))
        chunk = group["C"].chunks[0]
        _resize(group, cfg.n, chunk)
        if not extending:
            done = np.flatnonzero(group[resume.LEDGER][...])
            echo(f"resuming {staging.name}: {sum(min((i + 1) * chunk, cfg.n) - i * chunk for i in done)} "
                 "pairs already written")
        if chunk != cfg.chunk_size and base > 0:
            echo(f"keeping the store's chunk size {chunk} (asked {cfg.chunk_size})")
    else:
        base = 0
        chunk = min(cfg.chunk_size, cfg.n)
        group = _create_store(staging, cfg, plan, cfg.n, chunk)

    cfg_json = _cfg_json(cfg)
    pure_new = 0
    # Unique task keys per store: two runs sharing a scheduler must never share results.
    token = dask.base.tokenize(str(staging.resolve()), cfg_json)
    with Timer() as timer:
        if plan.kind == "simulate":
            sim = dask.delayed(simulate_pure_chunk, pure=True)
            deps = [sim(str(staging), cfg_json, i * PURE_CHUNK, min((i + 1) * PURE_CHUNK, plan.pool_size),
                        dask_key_name=f"kdeconv-pure-{token}-{i * PURE_CHUNK}")
                    for (i,) in resume.pending(group, PURE_LEDGER)]
            if deps:
                pure_new = compute(client, dask.delayed(_total)(deps), progress=progress)
            resume.require_complete(group, out, PURE_LEDGER)
            group.attrs["pure_complete"] = True
        write = dask.delayed(write_pair_chunk, pure=True)
        ranges = [_pair_range(i, chunk, base, cfg.n) for (i,) in resume.pending(group)]
        tasks = [write(str(staging), cfg_json, s, e, plan.pool_size,
                       dask_key_name=f"kdeconv-pairs-{token}-{s}-{e}")
                 for s, e in ranges if e > s]
        written = compute(client, dask.delayed(_total)(tasks), progress=progress) if tasks else 0
    resume.require_complete(group, out)
    attrs = {**_attrs(cfg, plan, n_complete=cfg.n, pure_complete=True), resume.RESUME_KEY: key}
    if not group.attrs.get(EVERY_CHUNK_WRITTEN):  # extends a store of an earlier kdeconv, which
        attrs[EVERY_CHUNK_WRITTEN] = False        # skipped chunks equal to the fill value
    group.attrs.update(attrs)
    resume.finish(staging, out)
    return {"new": written, "n": cfg.n, "seconds": timer.seconds, "base": base, "pure": pure_new}


@dataclass
class GenerateResult:
    out: Path
    pairs: int          # pairs written by this run
    total: int          # pairs in the store
    pure: int           # pure patterns simulated by this run
    seconds: float


def run(config: GenerateConfig | dict | str | Path, *, out: str | Path, overwrite: bool = False,
        client=None, cluster=None, progress: bool | None = True, echo=print) -> GenerateResult:
    """Generate ``config.n`` pairs into the pairs store ``out`` (``kdeconv.generate``).

    ``config``: a ``GenerateConfig``, a dict or a YAML path. A bad source or output is refused
    before any cluster starts; then the pairs are made on ``client``, else on a cluster started
    from ``cluster`` (a local one by default). A finished store with the same config grows to a
    larger ``n``; an interrupted run resumes.
    """
    from kdeconv.cluster import client_for, summary_line
    from kdeconv.config import coerce_config

    cfg = coerce_config(GenerateConfig, config)
    plan_source(cfg)  # bad source or output: refused before any cluster starts
    check_output(cfg, out, overwrite)
    with client_for(client, cluster, echo=echo) as client:
        result = run_generate(cfg, out, client, overwrite=overwrite, echo=echo, progress=progress)
    if result["new"]:
        echo(summary_line("generate", result["new"], result["seconds"], unit="pairs")
             + (f"; simulated {result['pure']} pure patterns" if result.get("pure") else "")
             + (f"; store now holds {result['n']}" if result.get("base") else ""))
    return GenerateResult(Path(out), int(result["new"]), int(result["n"]), int(result.get("pure") or 0),
                          float(result["seconds"]))


def write_debug_panels(store: str | Path, folder: str | Path, count: int = 6) -> list[Path]:
    """PNG per pair: A, B, C, C with the mask boundary, and C - (wA*A + wB*B)."""
    import zarr
    from matplotlib.patches import Circle

    from kdeconv import figures
    from kdeconv.mixing import from_uint16
    from kdeconv.preprocess import mask_geometry as geometry

    group = zarr.open_group(str(store), mode="r")
    cfg = GenerateConfig.model_validate(group.attrs["config"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = group["C"].shape[0]
    picks = np.unique(np.linspace(0, n - 1, min(count, n)).astype(int))
    cy, cx, r = geometry(tuple(group["C"].shape[1:]), cfg.mask.radius)
    paths = []
    for i in picks:
        a, b, c = (from_uint16(group[k][i]) for k in ("A", "B", "C"))
        w = group["weights"][i]
        diff = c - (w[0] * a + w[1] * b)
        fig, axes = figures.subplots(1, 5, figsize=(15, 3.3))
        for ax, img, title in zip(axes, (a, b, c, c, diff),
                                  (f"A (wA={w[0]:.2f})", f"B (wB={w[1]:.2f})", "C", "C + mask",
                                   "C - (wA A + wB B)")):
            ax.imshow(img, cmap="gray" if title != "C - (wA A + wB B)" else "coolwarm")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        axes[3].add_patch(Circle((cx, cy), r, fill=False, color="red", lw=1))
        fig.suptitle(f"pair {i} (masked={bool(group['masked'][i])}, "
                     f"index {int(group['index_a'][i])}/{int(group['index_b'][i])})", fontsize=10)
        path = folder / f"pair_{i:06d}.png"
        fig.savefig(path, dpi=80, bbox_inches="tight")
        paths.append(path)
    return paths
