"""Worker-side pipeline of ``separate`` on a device: reading, copying, the model and writing overlap.

For a list of chunks, four stages run at once:

1. reader threads decode the next chunks from Zarr (the codecs release the GIL) into page-locked
   host memory, so the device never waits on one single-threaded decompress;
2. the host->device copy of the next chunk runs on its own CUDA stream;
3. the device separates the current chunk (``device.DeviceKernel``) on the compute stream;
4. the device->host copy of A, B, weights and blank flags runs on a third stream, and writer
   threads write the chunk's region of the output and only then mark it done in the ledger.

Every chunk has its own region, so results stay in order whatever finishes first, and a chunk is
marked only after its data is written: the resume ledger stays exact. When something fails, the
chunks already handed to writers are finished (they are whole), no further chunk is started, and
the first error is raised. On the CPU the same code runs without streams.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from kdeconv.errors import InputError
from kdeconv.separate.device import DeviceKernel, from_transfer, to_transfer

__all__ = ["ChunkJob", "run_pipeline", "pipeline_threads"]


@dataclass(frozen=True)
class ChunkJob:
    """One chunk of the map: its index in the chunk grid (the ledger's) and its navigation region."""

    index: tuple[int, ...]
    region: tuple[slice, ...]


def pipeline_threads(device: torch.device) -> tuple[int, int, int]:
    """(reader threads, writer threads, chunks in flight) for ``device``: on a GPU enough
    threads to decode and encode as fast as the card separates; on the CPU one of each, since
    the model already takes the cores."""
    if device.type != "cuda":
        return 1, 1, 2
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 4)
    return max(2, min(8, cores // 3)), max(2, min(8, cores // 3)), 3


class _Launcher:
    """Queues one chunk on the device: copy in, separate, copy out; returns host tensors and the
    event after which they hold the results (None on the CPU, where they are ready)."""

    def __init__(self, kernel: DeviceKernel):
        self.kernel = kernel
        self.device = kernel.device
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            self.upload = torch.cuda.Stream(self.device)
            self.compute = torch.cuda.Stream(self.device)
            self.download = torch.cuda.Stream(self.device)

    def __call__(self, host: torch.Tensor):
        if not self.cuda:
            return [t for t in self.kernel(host.to(self.device)).tensors()], None
        with torch.cuda.stream(self.upload):
            raw = host.to(self.device, non_blocking=True)
            uploaded = torch.cuda.Event()
            uploaded.record(self.upload)
        self.compute.wait_event(uploaded)
        with torch.cuda.stream(self.compute):
            raw.record_stream(self.compute)  # its memory is not reused before the kernel ran
            result = self.kernel(raw)
            computed = torch.cuda.Event()
            computed.record(self.compute)
        self.download.wait_event(computed)
        outputs = []
        with torch.cuda.stream(self.download):
            for tensor in result.tensors():
                tensor.record_stream(self.download)
                host_out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                host_out.copy_(tensor, non_blocking=True)
                outputs.append(host_out)
            ready = torch.cuda.Event()
            ready.record(self.download)
        return outputs, ready


def run_pipeline(jobs: list[ChunkJob], *, read: Callable[[ChunkJob], np.ndarray],
                 kernel: DeviceKernel,
                 write: Callable[[ChunkJob, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None],
                 readers: int | None = None, writers: int | None = None,
                 in_flight: int | None = None, waits: dict[str, float] | None = None) -> list[int]:
    """Separate ``jobs`` in order; returns the pattern count of each.

    ``read(job)`` returns the chunk's raw patterns ``(...nav, sy, sx)``; ``write(job, a, b,
    weights, blank)`` writes its region (and marks it done). ``in_flight`` bounds the chunks
    read ahead and those waiting to be written (memory: a few chunks). ``waits``, when given,
    gets the seconds the loop spent waiting for reads, launching chunks and waiting for writes
    (the stage that bounds the rate is the one waited for), and the writer threads' summed
    seconds waiting for the device and writing.
    """
    default_readers, default_writers, default_depth = pipeline_threads(kernel.device)
    readers, writers = readers or default_readers, writers or default_writers
    depth = in_flight or default_depth
    launch = _Launcher(kernel)
    out_dtype = kernel.out_dtype

    reader_seconds: list[float] = []

    def load(job: ChunkJob):
        t0 = time.perf_counter()
        block = np.asarray(read(job))
        host = to_transfer(block.reshape((-1,) + block.shape[-2:]))
        host = host.pin_memory() if launch.cuda else host
        reader_seconds.append(time.perf_counter() - t0)
        return block.shape, host

    writer_seconds: list[tuple[float, float]] = []  # (waiting for the device, writing) per chunk

    def finish(job: ChunkJob, shape, outputs, ready) -> None:
        t0 = time.perf_counter()
        if ready is not None:
            ready.synchronize()
        t1 = time.perf_counter()
        a, b, weights, blank, bad_input, bad_model = outputs
        if bool(bad_input):
            raise InputError("the map holds NaN or inf values; fix or mask them before separating")
        if bool(bad_model):
            raise InputError("the model returned NaN or inf values: the checkpoint is unusable "
                             "(a diverged training run?)")
        nav = tuple(shape[:-2])
        write(job, from_transfer(a, out_dtype).reshape(shape), from_transfer(b, out_dtype).reshape(shape),
              weights.numpy().reshape(nav + (2,)), blank.numpy().reshape(nav))
        writer_seconds.append((t1 - t0, time.perf_counter() - t1))

    counts: list[int] = []
    read_pool = ThreadPoolExecutor(readers, thread_name_prefix="kdeconv-read")
    write_pool = ThreadPoolExecutor(writers, thread_name_prefix="kdeconv-write")
    reads: deque[Future] = deque(read_pool.submit(load, job) for job in jobs[:depth])
    writes: deque[Future] = deque()
    waited = {"reads": 0.0, "launches": 0.0, "writes": 0.0}
    clock = time.perf_counter
    try:
        for k, job in enumerate(jobs):
            t0 = clock()
            shape, host = reads.popleft().result()
            t1 = clock()
            if k + depth < len(jobs):
                reads.append(read_pool.submit(load, jobs[k + depth]))
            outputs, ready = launch(host)
            del host
            t2 = clock()
            writes.append(write_pool.submit(finish, job, shape, outputs, ready))
            counts.append(int(np.prod(shape[:-2])))
            while writes and (len(writes) > depth or writes[0].done()):
                writes.popleft().result()  # raises a writer's error here, in order
            waited["reads"] += t1 - t0
            waited["launches"] += t2 - t1
            waited["writes"] += clock() - t2
        t0 = clock()
        while writes:
            writes.popleft().result()
        waited["writes"] += clock() - t0
        if waits is not None:
            waits.update({f"loop_waiting_for_{k}": round(v, 3) for k, v in waited.items()})
            waits["writers_waiting_for_device"] = round(sum(w for w, _ in writer_seconds), 3)
            waits["writers_writing"] = round(sum(w for _, w in writer_seconds), 3)
            waits["readers_reading"] = round(sum(reader_seconds), 3)
            waits["readers"], waits["writers"] = readers, writers
    except BaseException:
        for future in reads:
            future.cancel()
        for future in writes:  # chunks handed over are whole: let them land (and be marked)
            try:
                future.result()
            except BaseException:  # noqa: BLE001 - the first error is the one raised
                pass
        raise
    finally:
        read_pool.shutdown(wait=True, cancel_futures=True)
        write_pool.shutdown(wait=True)
    return counts
