"""Training data streamed from pairs stores, whole Zarr chunks at a time.

Nothing is loaded whole: each step reads one chunk's worth of C, A, B and weights. The order
is a pure function of (seed, pass, chunk), so a resumed run continues with exactly the batches it
would have seen. The tail ``val_fraction`` of every store is held out for validation, unless
separate validation stores are given (``open_validation_sources``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.errors import InputError
from kdeconv.io.store import open_store
from kdeconv.model.inputs import normalize_like, prepare_inputs

__all__ = ["PairsSource", "ChunkSpan", "Batch", "open_sources", "open_validation_sources",
           "TrainStream", "load_validation", "load_calibration", "augment_flips", "prepare_batch"]

ARRAYS = ("C", "A", "B", "weights")


@dataclass
class PairsSource:
    path: Path
    group: Any
    n: int
    shape: tuple[int, int]
    chunk: int
    n_train: int
    n_val: int

    def describe(self) -> dict[str, Any]:
        attrs = dict(self.group.attrs)
        return {"path": str(self.path), "n": self.n, "shape": list(self.shape),
                "n_train": self.n_train, "n_val": self.n_val,
                "generate_config": attrs.get("config", {}), "command": attrs.get("command", "")}


@dataclass(frozen=True)
class ChunkSpan:
    source: int
    start: int
    stop: int


@dataclass
class Batch:
    c: np.ndarray        # (b, sy, sx) float32 [0, 1], network input
    a: np.ndarray        # targets, normalised like c
    b: np.ndarray
    w_a: np.ndarray      # (b,) float32
    masked: np.ndarray   # (b,) bool


def _open_pairs(path: str | Path):
    """The store's group, pair count, pattern shape and chunk length (checked)."""
    group = open_store(path, kind="pairs", arrays=ARRAYS)
    c = group["C"]
    if c.ndim != 3:
        raise InputError(f"{path}: array C must be (n, sy, sx), got shape {c.shape}")
    n = c.shape[0]
    for name in ("A", "B"):
        if group[name].shape != c.shape:
            raise InputError(f"{path}: array {name} has shape {group[name].shape}, C has {c.shape}")
    if group["weights"].shape != (n, 2):
        raise InputError(f"{path}: weights must be ({n}, 2), got {group['weights'].shape}")
    return group, n, tuple(c.shape[1:]), int(c.chunks[0])


def open_sources(paths: list[str | Path], val_fraction: float, val_max: int, *,
                 hold_out: bool = True) -> list[PairsSource]:
    """Training stores; with ``hold_out`` the tail of each is validation (see module docstring)."""
    if not paths:
        raise InputError("no training data: pass --data PAIRS.zarr (one or more)")
    sources = []
    val_each = max(1, val_max // len(paths))
    for p in paths:
        group, n, shape, chunk = _open_pairs(p)
        n_val = min(max(1, math.ceil(n * val_fraction)), val_each) if hold_out else 0
        if n - n_val < 1:
            raise InputError(f"{p}: {n} pairs is too few to hold out validation pairs" if hold_out
                             else f"{p}: the store holds no pairs")
        sources.append(PairsSource(Path(p), group, n, shape, chunk, n - n_val, n_val))
    return sources


def open_validation_sources(paths: list[str | Path]) -> list[PairsSource]:
    """Stores used whole for validation (no training pairs)."""
    if not paths:
        raise InputError("no validation data: val_data lists no pairs store")
    sources = []
    for p in paths:
        group, n, shape, chunk = _open_pairs(p)
        if n < 1:
            raise InputError(f"{p}: the validation store holds no pairs")
        sources.append(PairsSource(Path(p), group, n, shape, chunk, 0, n))
    return sources


def _read(src: PairsSource, start: int, stop: int) -> tuple[np.ndarray, ...]:
    g = src.group
    return (g["C"][start:stop], g["A"][start:stop], g["B"][start:stop],
            np.asarray(g["weights"][start:stop, 0], dtype=np.float32))


def prepare_batch(c_raw, a_raw, b_raw, w_a, normalization) -> Batch:
    c, masked = prepare_inputs(c_raw, normalization)
    a = normalize_like(a_raw, masked, normalization)
    b = normalize_like(b_raw, masked, normalization)
    return Batch(c, a, b, np.asarray(w_a, dtype=np.float32), masked)


def augment_flips(batch: Batch, rng: np.random.Generator) -> Batch:
    """One random flip/transpose per sample, the same on C, A and B (transpose only if square)."""
    sy, sx = batch.c.shape[1:]
    ops = rng.integers(0, 8 if sy == sx else 4, size=len(batch.c))
    out = []
    for arr in (batch.c, batch.a, batch.b):
        arr = arr.copy()
        for i, op in enumerate(ops):
            x = arr[i]
            if op & 1:
                x = x[::-1]
            if op & 2:
                x = x[:, ::-1]
            if op & 4:
                x = x.T
            arr[i] = x.copy()  # x is a view of arr[i]
        out.append(arr)
    return Batch(out[0], out[1], out[2], batch.w_a, batch.masked)


class TrainStream:
    """Endless batches over the train split: passes of shuffled chunks, shuffled within chunks.

    Position = (pass, batch index in the pass); ``batches(position)`` starts there, so resuming
    skips finished batches without reading them. One chunk is read ahead in a thread.
    """

    def __init__(self, sources: list[PairsSource], batch_size: int, seed: int,
                 normalization: dict[str, Any], flips: bool):
        self.sources = sources
        self.batch_size = batch_size
        self.seed = seed
        self.normalization = normalization
        self.flips = flips
        self.spans = []
        for i, s in enumerate(sources):
            for start in range(0, s.n_train, s.chunk):  # aligned to Zarr chunks: whole-chunk reads
                self.spans.append(ChunkSpan(i, start, min(s.n_train, start + s.chunk)))

    def _batches_in(self, span: ChunkSpan) -> int:
        return math.ceil((span.stop - span.start) / self.batch_size)

    @property
    def batches_per_pass(self) -> int:
        return sum(self._batches_in(s) for s in self.spans)

    def _order(self, pass_: int) -> list[ChunkSpan]:
        rng = np.random.default_rng([self.seed, pass_, 0])
        return [self.spans[i] for i in rng.permutation(len(self.spans))]

    def _load(self, pass_: int, k: int, span: ChunkSpan) -> Batch:
        c, a, b, w = _read(self.sources[span.source], span.start, span.stop)
        perm = np.random.default_rng([self.seed, pass_, 1, k]).permutation(len(c))
        return prepare_batch(c[perm], a[perm], b[perm], w[perm], self.normalization)

    def batches(self, pass_: int = 0, offset: int = 0) -> Iterator[tuple[int, int, Batch]]:
        """Yield ``(pass, index in pass, batch)`` forever, starting at (pass_, offset)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdeconv-read") as pool:
            while True:
                order = self._order(pass_)
                # skip whole chunks before the offset (resume)
                plan, seen = [], 0
                for k, span in enumerate(order):
                    nb = self._batches_in(span)
                    if seen + nb > offset:
                        plan.append((k, span, max(0, offset - seen), seen))
                    seen += nb
                future = pool.submit(self._load, pass_, plan[0][0], plan[0][1]) if plan else None
                for j, (_k, span, first, base) in enumerate(plan):
                    chunk = future.result()
                    if j + 1 < len(plan):
                        future = pool.submit(self._load, pass_, plan[j + 1][0], plan[j + 1][1])
                    for bi in range(first, self._batches_in(span)):
                        sl = slice(bi * self.batch_size, (bi + 1) * self.batch_size)
                        batch = Batch(chunk.c[sl], chunk.a[sl], chunk.b[sl], chunk.w_a[sl],
                                      chunk.masked[sl])
                        if self.flips:
                            batch = augment_flips(batch, np.random.default_rng(
                                [self.seed, pass_, 2, base + bi]))
                        yield pass_, base + bi, batch
                pass_, offset = pass_ + 1, 0


def load_calibration(sources: list[PairsSource], normalization: dict[str, Any],
                     per_store: int = 64) -> list[Batch]:
    """The first ``per_store`` train pairs of every store: inputs for BatchNorm recalibration."""
    out = []
    for s in sources:
        c, a, b, w = _read(s, 0, min(per_store, s.n_train))
        out.append(prepare_batch(c, a, b, w, normalization))
    return out


def load_validation(sources: list[PairsSource], normalization: dict[str, Any]) -> list[Batch]:
    """The held-out tail of every store, normalised once (one Batch per store)."""
    out = []
    for s in sources:
        c, a, b, w = _read(s, s.n_train, s.n)
        out.append(prepare_batch(c, a, b, w, normalization))
    return out
