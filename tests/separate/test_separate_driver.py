"""The Dask driver: the same answer on any cluster, once-per-worker model, resume."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from kdeconv.config.cluster import ClusterConfig
from kdeconv.config.separate import SeparateConfig
from kdeconv.model import load_separator
from kdeconv.preprocess.background import static_background_from_mean
from kdeconv.preprocess.resample import working_range_of, working_shape
from kdeconv.separate.chunk import separate_patterns
from kdeconv.separate.driver import separate_map
from kdeconv.separate.model_choice import size_default


def reference(data: np.ndarray, config: SeparateConfig):
    """The kernel on the whole map in this process, with the shipped model for its pattern size
    (the maps here are too small for a vote): what every cluster must reproduce."""
    mean = data.reshape((-1,) + data.shape[-2:]).mean(0, dtype=np.float64)
    static_bg = static_background_from_mean(mean, config.background.static_smooth_std)
    separator = load_separator(size_default(data.shape[-2:]), device="cpu", precision=config.precision)
    work_shape = working_shape(data.shape[-2:], working_range_of(separator.meta), config.working_size)
    return separate_patterns(data, separator, batch_size=config.batch_size,
                             background=config.background.model_dump(), static_bg=static_bg,
                             work_shape=work_shape, residual_pass=config.residual_pass)


def read(path):
    group = zarr.open_group(str(path), mode="r")
    return group["A"][...], group["B"][...], group["weights"][...], dict(group.attrs)


# Where the two constituents are near equal, A is made by three chained network passes (the
# first, then B and A again from residuals): the float rounding that a process's thread count
# changes reaches a few 16-bit LSB of A there, and of B, made from a residual too. Measured: 7 and
# 3 on an AMD EPYC; 31 and 8 on a Xeon with AMX, whose fp32 kernels split work otherwise.
A_LSB_16 = 48
B_LSB_16 = 12


def assert_close(got, ref, dtype, atol=1e-4):
    a, b, w = got[:3]
    ra, rb, rw = ref
    assert a.dtype == ra.dtype == np.dtype(dtype) and a.shape == ra.shape
    if np.dtype(dtype).kind in "ui":  # 1 LSB (A: see A_LSB_16)
        lsb_a, lsb_b = (1, 1) if np.dtype(dtype).itemsize == 1 else (A_LSB_16, B_LSB_16)
        assert np.abs(a.astype(np.int64) - ra).max() <= lsb_a
        assert np.abs(b.astype(np.int64) - rb).max() <= lsb_b
    else:
        np.testing.assert_allclose(a, ra, atol=max(atol, A_LSB_16 / 65535))
        np.testing.assert_allclose(b, rb, atol=max(atol, B_LSB_16 / 65535))
    np.testing.assert_allclose(w, rw, atol=atol)
    assert (w[..., 0] >= w[..., 1]).all()


@pytest.mark.parametrize("dtype", [pytest.param(np.uint16, marks=pytest.mark.slow), np.float32])
def test_same_result_on_1_and_2_workers_and_real_processes(make_map, tmp_path, dask_processes, dtype):
    from distributed import Client

    map_path, data = make_map(dtype=dtype, shape=(6, 8, 32, 32), nav_chunk=(2, 8))
    # fp32 is exact to 1 LSB across processes; bf16 (auto on CPUs with AMX) rounds
    # differently with the thread count of the process, within bf16's own precision.
    # the kernel's numbers across processes: the neighbour fit (which rewrites some) is off here
    config = SeparateConfig(batch_size=5, panels=2, precision="fp32", background={"mode": "raw"},
                            neighbour_fit=False)
    atol = 1e-4
    if dtype == np.float32:  # the other static background variant, at the default precision
        config.background.static_operation = "divide"
        config.background.static_smooth_std = 3.0
        config.precision = "auto"
        if load_separator(None, device="cpu").precision == "bf16":
            atol = 0.03
    ref = reference(data, config)
    # LocalClusters take seconds to start: the float case runs on the shared real processes only.
    clusters = {"procs": ClusterConfig(scheduler_file=str(dask_processes[1]))}
    if dtype == np.uint16:
        clusters.update(one=ClusterConfig(workers=1), two=ClusterConfig(workers=2))
    for name, cluster in clusters.items():
        out = tmp_path / f"{name}.zarr"
        result = separate_map(map_path, out, config, cluster)
        assert result.patterns == result.total == 48 and result.chunks == 3
        # One timing per pass over the map: the static background's mean, the separation, the
        # in-grain claims (a 6x8 map is large enough to segment).
        assert set(result.phase_seconds) == {"static_background", "separation", "in_grain_claims"}
        assert all(s >= 0 for s in result.phase_seconds.values())
        got = read(out)
        assert_close(got, ref, dtype, atol)
        attrs = got[3]
        assert attrs["kdeconv_kind"] == "separated"
        assert attrs["source"]["scan"] == {"step_x": 1.5, "step_y": 1.5, "unit": "um"}
        assert attrs["source"]["detector"]["sample_tilt"] == 70.0
        assert attrs["config"]["background"]["static"] == "map_mean"
        assert attrs["preprocessing"]["model_normalization"]["method"] in ("minmax", "percentile")
        assert (out.parent / f"{name}.zarr.weights.png").stat().st_size > 0
        assert (out.parent / f"{name}.zarr.panels.png").stat().st_size > 0
        assert not (out.parent / f"{name}.zarr.partial").exists()

    # The model travelled as a path + hash: each real worker process loaded it once per
    # (checkpoint, device, precision), never again.
    with Client(scheduler_file=str(dask_processes[1]), timeout="30s") as client:
        from kdeconv.separate.worker import load_count, loaded_models

        loads = client.run(load_count)
        models = client.run(loaded_models)
    assert sum(loads.values()) >= 1
    assert all(loads[w] == len(models[w]) == len(set(map(tuple, models[w]))) for w in loads)


def test_line_scan_and_odd_pattern_size(make_map, tmp_path, dask_processes):
    map_path, data = make_map(shape=(9, 27, 41), dtype=np.uint8, nav_chunk=(4,))
    config = SeparateConfig(batch_size=4, panels=0, precision="fp32",  # exact to 1 LSB
                            background={"mode": "raw"})
    cluster = ClusterConfig(scheduler_file=str(dask_processes[1]))
    result = separate_map(map_path, tmp_path / "sep.zarr", config, cluster)
    assert result.chunks == 3 and result.report_files == []
    assert_close(read(tmp_path / "sep.zarr"), reference(data, config), np.uint8)


def _chunk_files(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "zarr.json"}


def test_resume_redoes_only_unfinished_chunks_and_matches(make_map, tmp_path, dask_processes):
    map_path, data = make_map(shape=(8, 6, 32, 32), nav_chunk=(1, 6))
    config = SeparateConfig(batch_size=4, panels=0)
    cluster = ClusterConfig(scheduler_file=str(dask_processes[1]))
    full = tmp_path / "full.zarr"
    separate_map(map_path, full, config, cluster)

    # An interrupted run: chunk 2 half-written (data but no marker), chunk 5 never started.
    out = tmp_path / "out.zarr"
    partial = tmp_path / "out.zarr.partial"
    shutil.copytree(full, partial)
    group = zarr.open_group(str(partial), mode="r+")
    group["chunk_done"][2, 0] = 0
    group["A"][2] = np.full((6, 32, 32), 12345, np.uint16)
    group["chunk_done"][5, 0] = 0
    for name in ("A", "B", "weights"):
        for chunk in (partial / name / "c" / "5").rglob("*"):
            if chunk.is_file():
                chunk.unlink()

    result = separate_map(map_path, out, config, cluster)
    assert result.chunks == 8 and result.chunks_skipped == 6
    assert result.patterns == 12  # two chunks of one 6-pattern row
    assert _chunk_files(out) == _chunk_files(full)  # byte-identical chunks
    for name in ("A", "B", "weights", "chunk_done"):
        np.testing.assert_array_equal(zarr.open_array(str(out / name))[...],
                                      zarr.open_array(str(full / name))[...])


def test_changed_settings_start_over(make_map, tmp_path):
    from kdeconv.separate.driver import _open_existing, create_store, resume_key

    map_path, _ = make_map(shape=(4, 6, 32, 32), nav_chunk=(1, 6))
    src = zarr.open_group(str(map_path))["patterns"]
    staging = tmp_path / "out.zarr.partial"
    key = resume_key(map_path, src, "f" * 64, SeparateConfig())
    create_store(staging, src, {}, key, SeparateConfig(), "f" * 64)
    assert _open_existing(staging, key) is not None  # same command: resume
    other = resume_key(map_path, src, "f" * 64, SeparateConfig(batch_size=3))
    assert _open_existing(staging, other) is None and not staging.exists()  # else start over
    (staging / "junk").mkdir(parents=True)
    assert _open_existing(staging, key) is None and not staging.exists()


def test_rerun_into_same_path_on_a_long_lived_cluster_uses_the_new_background(make_map, tmp_path,
                                                                               dask_processes):
    cluster = ClusterConfig(scheduler_file=str(dask_processes[1]))
    config = SeparateConfig(batch_size=8, panels=0, precision="fp32",  # exact to 1 LSB
                            background={"mode": "raw"})
    first, _ = make_map(name="first.zarr", shape=(3, 4, 32, 32), nav_chunk=(1, 4), seed=1)
    second, data = make_map(name="second.zarr", shape=(3, 4, 32, 32), nav_chunk=(1, 4), seed=2)
    separate_map(first, tmp_path / "out.zarr", config, cluster)
    separate_map(second, tmp_path / "out.zarr", config, cluster, overwrite=True)
    assert_close(read(tmp_path / "out.zarr"), reference(data, config), np.uint16)


def test_a_model_error_on_the_trial_pattern_is_an_input_error(make_map, tmp_path, monkeypatch):
    from separate_stub_model import load_stub

    import kdeconv.model
    from kdeconv.errors import InputError

    monkeypatch.setattr(kdeconv.model, "load_separator", load_stub)
    map_path, _ = make_map(shape=(2, 2, 17, 17), nav_chunk=(1, 2))
    with pytest.raises(InputError, match=r"cannot separate patterns of shape \(17, 17\)"):
        separate_map(map_path, tmp_path / "out.zarr", SeparateConfig(working_size=17))
    assert not list(tmp_path.glob("out.zarr*"))


def test_large_patterns_run_at_the_working_size_and_come_back_whole(make_map, tmp_path):
    map_path, data = make_map(shape=(2, 2, 240, 240), nav_chunk=(1, 2))
    config = SeparateConfig(panels=0, precision="fp32", background={"mode": "processed"})
    result = separate_map(map_path, tmp_path / "sep.zarr", config, ClusterConfig(workers=1))
    assert result.work_shape == (120, 120) and result.background == "processed"
    a, b, w, attrs = read(tmp_path / "sep.zarr")
    assert a.shape == b.shape == data.shape and a.dtype == data.dtype
    working = attrs["preprocessing"]["working_size"]
    assert working["map_shape"] == [240, 240] and working["model_shape"] == [120, 120]
    decision = attrs["preprocessing"]["background_decision"]
    assert decision["requested"] == decision["mode"] == "processed" and decision["mask"] == "none"
    assert "static_background" not in zarr.open_group(str(tmp_path / "sep.zarr"), mode="r")


def test_workers_that_resolve_auto_precision_differently_are_refused():
    from kdeconv.errors import InputError
    from kdeconv.separate.driver import run_precision
    from kdeconv.separate.worker import resolved_precision

    class Workers:
        def __init__(self, *found):
            self.found = {f"tcp://10.0.0.{k}:8786": name for k, name in enumerate(found)}

        def run(self, function, *args):
            return self.found

    with pytest.raises(InputError, match="bf16 on 1 worker.*fp32 on 1 worker.*--precision"):
        run_precision(Workers("bf16", "fp32"), "auto", "auto")
    assert run_precision(Workers("bf16", "fp32"), "auto", "fp32") == "fp32"  # pinned: asked as is
    assert run_precision(Workers("bf16", "bf16"), "auto", "auto") == "bf16"
    assert run_precision(None, "cpu", "auto") == resolved_precision("cpu", "auto")


def test_auto_precision_is_resolved_once_recorded_and_keyed(make_map, tmp_path, dask_processes):
    from kdeconv.separate.worker import resolved_precision

    map_path, _ = make_map(shape=(4, 6, 32, 32), nav_chunk=(1, 6))
    cluster = ClusterConfig(scheduler_file=str(dask_processes[1]))
    config = SeparateConfig(batch_size=4, panels=0)  # precision auto
    expected = resolved_precision("cpu", "auto")  # the workers run on this machine
    lines: list[str] = []
    result = separate_map(map_path, tmp_path / "out.zarr", config, cluster, echo=lines.append)
    attrs = read(tmp_path / "out.zarr")[3]
    assert result.precision == attrs["precision"] == attrs["resume_key"]["precision"] == expected
    assert f"model precision: {expected} (auto)" in lines

    # An interrupted run whose auto meant the other precision (another machine): its finished
    # chunks are not mixed into this one's; it starts over and says so.
    partial = tmp_path / "again.zarr.partial"
    shutil.copytree(tmp_path / "out.zarr", partial)
    group = zarr.open_group(str(partial), mode="r+")
    group.attrs["resume_key"] = {**attrs["resume_key"], "precision": "fp32" if expected == "bf16" else "bf16"}
    group["chunk_done"][3, 0] = 0
    lines.clear()
    result = separate_map(map_path, tmp_path / "again.zarr", config, cluster, echo=lines.append)
    assert result.chunks_skipped == 0 and result.patterns == 24
    assert any("interrupted run with other settings" in line for line in lines)
