"""The device pipeline on the CPU: the numbers of the numpy kernel, results in order, an exact ledger."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import zarr
from separate_maps import blobs

from kdeconv.config.cluster import ClusterConfig
from kdeconv.config.separate import SeparateConfig
from kdeconv.model import load_separator
from kdeconv.model.residual_pass import A_AGAIN_FROM
from kdeconv.preprocess import circular_mask
from kdeconv.preprocess.background import static_background_from_mean
from kdeconv.preprocess.mask import screen_mask, screen_shape
from kdeconv.separate.chunk import blank_frames, separate_patterns
from kdeconv.separate.device import DeviceKernel, device_batch_size, from_transfer, to_transfer
from kdeconv.separate.driver import separate_map
from kdeconv.separate.pipeline import ChunkJob, run_pipeline

RAW = {"mode": "raw", "static": "map_mean", "static_operation": "subtract", "static_smooth_std": "auto",
       "dynamic": True, "dynamic_operation": "subtract", "dynamic_std": None}
PROCESSED = {**RAW, "mode": "processed", "static": "none", "dynamic": False}
WINDOWED = {**RAW, "mask": "circle"}  # a round screen's corners: every raw pattern masked first
# a round screen smaller than the pattern and off its centre: cut to its square, then masked
SCREENED = {**WINDOWED, "screen": [3, 1, 24]}


@pytest.fixture(scope="module")
def separator():
    return load_separator(None, device="cpu", precision="fp32")


def chunk_with_everything(shape, dtype, seed=0):
    """Patterns with two blank frames and three circular-masked ones."""
    block = blobs(shape, dtype, seed)
    mask = circular_mask(shape[-2:])
    block[1] = block[1].max()
    block[4] = 0
    for k in (2, 5, 6):
        block[k] = block[k] * mask
    return block


def device_run(kernel, block):
    result = kernel(to_transfer(block.reshape((-1,) + block.shape[-2:])))
    a, b, w, blank, bad_input, bad_model = result.tensors()
    assert not bool(bad_input) and not bool(bad_model)
    return (from_transfer(a, kernel.out_dtype).reshape(block.shape),
            from_transfer(b, kernel.out_dtype).reshape(block.shape), w.numpy(), blank.numpy())


@pytest.mark.parametrize("background", [RAW, PROCESSED, WINDOWED, SCREENED])
@pytest.mark.parametrize("shape,work,dtype", [((9, 32, 32), (60, 60), np.uint16),   # resampled up
                                              ((9, 64, 64), (48, 48), np.uint8),    # down
                                              ((9, 40, 40), None, np.float32)])     # as is
def test_device_kernel_equals_the_numpy_kernel(separator, background, shape, work, dtype):
    block = chunk_with_everything(shape, dtype)
    static = static_background_from_mean(block.mean(0, dtype=np.float64), "auto", background=background) \
        if background["static"] != "none" else None
    want_a, want_b, want_w = separate_patterns(block, separator, batch_size=4, background=background,
                                               static_bg=static, work_shape=work)
    kernel = DeviceKernel(separator, sig_shape=shape[-2:],
                          work_shape=work or screen_shape(shape[-2:], background), background=background,
                          static_bg=static, dtype=dtype, batch_size=4)
    a, b, w, blank = device_run(kernel, block)
    assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == block.shape
    np.testing.assert_array_equal(blank, blank_frames(block))
    assert blank[[1, 4]].all() and (a[[1, 4]] == 0).all() and np.isnan(w[[1, 4]]).all()
    if np.dtype(dtype).kind in "ui":  # float rounding: at most one step of the output dtype
        assert np.abs(a.astype(np.int64) - want_a).max() <= 1
        assert np.abs(b.astype(np.int64) - want_b).max() <= 1
    else:
        np.testing.assert_allclose(a, want_a, atol=2e-5)
        np.testing.assert_allclose(b, want_b, atol=2e-5)
    np.testing.assert_allclose(w, want_w, atol=1e-5)
    outside = ~screen_mask(shape[-2:], background)  # the inscribed circle, or the screen's
    assert (a[[2, 5, 6]][:, outside] == 0).all()
    if background.get("mask") == "circle":  # every pattern was masked, and the blank ones stayed blank
        assert (a[:, outside] == 0).all() and (b[:, outside] == 0).all()
        assert not np.isnan(w[[0, 3, 7, 8]]).any()


def test_a_screen_is_cut_out_separated_and_put_back(separator):
    """Known answer: a map seen through a round screen smaller than the pattern separates as its
    screen's square alone (masked to its circle), put back in place with zeros around it."""
    shape = (6, 40, 40)
    block = blobs(shape, np.uint16, seed=3)
    top, left, side = SCREENED["screen"]
    square = block[:, top: top + side, left: left + side]
    static = static_background_from_mean(block.mean(0, dtype=np.float64), "auto", background=SCREENED)
    assert static.shape == (side, side)
    np.testing.assert_array_equal(
        static, static_background_from_mean(square.mean(0, dtype=np.float64), "auto", background=WINDOWED))
    a, b, w = separate_patterns(block, separator, batch_size=4, background=SCREENED, static_bg=static,
                                work_shape=(48, 48))
    want_a, want_b, want_w = separate_patterns(square, separator, batch_size=4, background=WINDOWED,
                                               static_bg=static, work_shape=(48, 48))
    assert a.shape == block.shape and a.dtype == block.dtype
    np.testing.assert_array_equal(a[:, top: top + side, left: left + side], want_a)
    np.testing.assert_array_equal(b[:, top: top + side, left: left + side], want_b)
    np.testing.assert_array_equal(w, want_w)
    outside = ~screen_mask(shape[-2:], SCREENED)
    assert (a[:, outside] == 0).all() and (b[:, outside] == 0).all()
    assert (a[:, ~outside] > 0).mean() > 0.5


@pytest.mark.parametrize("background", [RAW, PROCESSED])
def test_device_kernel_runs_the_residual_pass_as_the_numpy_kernel(separator, background):
    """Every pattern separated again (bar 0): the least-squares fits and the stretches amplify
    float rounding a little, so the two paths agree to 1e-4 of the range for B and 4e-4 for A
    (made again from B's residual where the two are near equal) rather than one step."""
    shape, work = (9, 32, 32), (48, 48)
    block = chunk_with_everything(shape, np.uint16)
    static = static_background_from_mean(block.mean(0, dtype=np.float64), "auto") \
        if background["static"] != "none" else None
    once = separate_patterns(block, separator, batch_size=4, background=background, static_bg=static,
                             work_shape=work)
    want_a, want_b, want_w = separate_patterns(block, separator, batch_size=4, background=background,
                                               static_bg=static, work_shape=work, residual_pass=0.0)
    kernel = DeviceKernel(separator, sig_shape=shape[-2:], work_shape=work, background=background,
                          static_bg=static, dtype=np.uint16, batch_size=4, residual_pass=0.0)
    a, b, w, _ = device_run(kernel, block)
    clear = once[2][:, 1] < A_AGAIN_FROM                    # A there and the weights: the first pass's
    np.testing.assert_array_equal(want_a[clear], once[0][clear])
    np.testing.assert_array_equal(want_w, once[2])
    assert np.abs(want_b.astype(np.int64) - once[1]).max() > 1000
    top = np.iinfo(np.uint16).max
    assert np.abs(a.astype(np.int64) - want_a).max() <= 4e-4 * top
    assert np.abs(b.astype(np.int64) - want_b).max() <= 1e-4 * top
    np.testing.assert_allclose(w, want_w, atol=1e-5)
    outside = ~circular_mask(shape[-2:])
    assert (b[[2, 5, 6]][:, outside] == 0).all()


def test_nan_input_and_batch_size(separator):
    block = blobs((3, 32, 32), np.float32)
    block[2, 3, 3] = np.nan
    kernel = DeviceKernel(separator, sig_shape=(32, 32), work_shape=(32, 32), background=PROCESSED,
                          static_bg=None, dtype=np.float32)
    assert bool(kernel(to_transfer(block)).bad_input)
    assert device_batch_size(separator, (120, 120), 64) == 64  # the CPU bound, as the numpy path
    assert device_batch_size(separator, (2048, 2048), 64) == 4


def make_jobs(n_chunks, rows=4):
    return [ChunkJob((k,), (slice(k * rows, (k + 1) * rows),)) for k in range(n_chunks)]


def test_pipeline_keeps_order_and_marks_a_chunk_only_after_its_data(separator):
    rows, sig = 4, (32, 32)
    data = blobs((10 * rows,) + sig, np.uint16, seed=3)
    kernel = DeviceKernel(separator, sig_shape=sig, work_shape=sig, background=PROCESSED,
                          static_bg=None, dtype=np.uint16, batch_size=3)
    out = {"A": np.zeros_like(data), "W": np.full((len(data), 2), np.nan, np.float32)}
    marked, lock = [], threading.Lock()
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.02, 40)

    def read(job):
        time.sleep(delays[job.index[0]])  # readers finish out of order
        return data[job.region]

    def write(job, a, b, w, blank):
        time.sleep(delays[20 + job.index[0]])  # and so do writers
        out["A"][job.region], out["W"][job.region] = a, w
        with lock:
            marked.append(job.index[0])

    waits = {}
    counts = run_pipeline(make_jobs(10, rows), read=read, kernel=kernel, write=write, readers=3,
                          writers=3, in_flight=3, waits=waits)
    assert counts == [rows] * 10 and sorted(marked) == list(range(10))
    # Where it waited: each reader slept its delay, each writer its own (plus the write itself).
    assert waits["readers"] == waits["writers"] == 3
    assert waits["readers_reading"] >= delays[:10].sum() * 0.9
    assert waits["writers_writing"] >= delays[20:30].sum() * 0.9
    assert min(waits[k] for k in ("loop_waiting_for_reads", "loop_waiting_for_launches",
                                  "loop_waiting_for_writes", "writers_waiting_for_device")) >= 0
    want_a, _, want_w = separate_patterns(data, separator, batch_size=8, background=PROCESSED)
    assert np.abs(out["A"].astype(np.int64) - want_a).max() <= 1
    np.testing.assert_allclose(out["W"], want_w, atol=1e-5)


@pytest.mark.parametrize("failing", ["read", "write"])
def test_an_interrupted_pipeline_marks_exactly_the_chunks_it_wrote(separator, failing):
    rows, sig = 2, (32, 32)
    data = blobs((8 * rows,) + sig, np.uint16, seed=4)
    kernel = DeviceKernel(separator, sig_shape=sig, work_shape=sig, background=PROCESSED,
                          static_bg=None, dtype=np.uint16, batch_size=8)
    written, marked = {}, set()

    def read(job):
        if failing == "read" and job.index[0] == 5:
            raise OSError("disk gone")
        return data[job.region]

    def write(job, a, b, w, blank):
        if failing == "write" and job.index[0] == 3:
            raise OSError("disk full")
        written[job.index[0]] = a.copy()
        marked.add(job.index[0])  # after the data, as the driver does

    with pytest.raises(OSError):
        run_pipeline(make_jobs(8, rows), read=read, kernel=kernel, write=write, in_flight=2)
    if failing == "read":
        assert marked == {0, 1, 2, 3, 4}  # every chunk before the failed read, none after
    else:
        assert 3 not in marked and {0, 1, 2} <= marked and max(marked) <= 3 + 2
    want = separate_patterns(data, separator, batch_size=8, background=PROCESSED)[0]
    for k in marked:
        assert np.abs(written[k].astype(np.int64) - want[k * rows:(k + 1) * rows]).max() <= 1


def _chunk_files(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "zarr.json"}


def test_driver_device_pipeline_matches_the_chunk_path_and_resumes(make_map, tmp_path, dask_processes):
    map_path, data = make_map(shape=(6, 8, 32, 32), nav_chunk=(1, 8))
    # one pass: the residual pass amplifies the two paths' float rounding past one step
    # (test_device_kernel_runs_the_residual_pass_as_the_numpy_kernel)
    config = SeparateConfig(batch_size=5, panels=0, precision="fp32", background={"mode": "raw"},
                            residual_pass=None)
    cluster = ClusterConfig(scheduler_file=str(dask_processes[1]))
    chunked = separate_map(map_path, tmp_path / "chunk.zarr", config, cluster, pipeline="chunk")
    full = tmp_path / "device.zarr"
    result = separate_map(map_path, full, config, cluster, pipeline="device")
    assert result.patterns == chunked.patterns == 48 and result.chunks == 6
    want, got = zarr.open_group(str(tmp_path / "chunk.zarr")), zarr.open_group(str(full))
    for name in ("A", "B"):
        assert np.abs(got[name][...].astype(np.int64) - want[name][...]).max() <= 1
    np.testing.assert_allclose(got["weights"][...], want["weights"][...], atol=1e-5)
    np.testing.assert_array_equal(got["blank"][...], want["blank"][...])

    # Interrupted: chunk 2 written but not marked (killed between data and marker), chunk 4
    # never written. The rerun redoes those two only and ends byte-identical.
    partial = tmp_path / "out.zarr.partial"
    shutil.copytree(full, partial)
    group = zarr.open_group(str(partial), mode="r+")
    group["chunk_done"][2, 0] = 0
    group["A"][2] = 12345
    group["chunk_done"][4, 0] = 0
    group["B"][4] = 0
    again = separate_map(map_path, tmp_path / "out.zarr", config, cluster, pipeline="device")
    assert again.chunks_skipped == 4 and again.patterns == 16
    assert _chunk_files(tmp_path / "out.zarr") == _chunk_files(full)


def test_a_device_without_uint16_casts_gets_the_same_bytes(separator, monkeypatch):
    import torch

    from kdeconv.separate import device

    block = chunk_with_everything((8, 32, 32), np.uint16, seed=5)
    kw = dict(sig_shape=(32, 32), work_shape=(60, 60), background=PROCESSED, static_bg=None,
              dtype=np.uint16, batch_size=4)
    native = device_run(DeviceKernel(separator, **kw), block)
    monkeypatch.setitem(device._CARRIERS, ("cpu", np.dtype(np.uint16).str), torch.int16)
    kernel = DeviceKernel(separator, **kw)
    assert kernel.carrier == torch.int16
    carried = device_run(kernel, block)
    for x, y in zip(native, carried):
        np.testing.assert_array_equal(x, y)
