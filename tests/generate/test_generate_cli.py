"""`kdeconv generate` through the real CLI: determinism across workers, chunk sizes and
schedulers, append, map source, debug panels, bad input."""

from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

ARRAYS = ("C", "A", "B", "weights", "index_a", "index_b", "rotation_a", "rotation_b", "masked",
          "augment")

TINY = {
    "seed": 11, "n": 60, "chunk_size": 16, "pipeline": "mix_then_normalize",
    "source": {"kind": "simulate", "master": {"kind": "nickel"}, "n_pure": 24, "shape": [32, 32],
               "pc_x": [0.45, 0.55], "pc_y": [0.45, 0.55], "pc_z": [0.5, 0.6],
               "sample_tilt": [69, 71], "camera_tilt": [-2, 2]},
    "weights": {"pure_fraction": 0.2}, "mask": {"fraction": 0.4},
    "augment": {"realism": True, "flips": True, "gamma": [0.9, 1.1]},
    "group_size": 16, "window": 12,
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _arrays(store):
    g = zarr.open_group(str(store), mode="r")
    return {k: g[k][:] for k in ARRAYS}


def _assert_same(x, y):
    for k in ARRAYS:
        assert x[k].dtype == y[k].dtype, k
        assert np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f"), k


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, dask_processes):
    """The same config run three ways: 1 local worker, 2 local workers, remote scheduler."""
    from click.testing import CliRunner

    from kdeconv.cli import main

    tmp = tmp_path_factory.mktemp("gen")
    cfg = _write(tmp / "tiny.yaml", TINY)
    runner = CliRunner()
    runs = {}
    _, sched_file = dask_processes
    for name, extra in {"w1_c16": ["--workers", "1", "--chunk-size", "16", "--debug"],
                        "w2_c7": ["--workers", "2", "--chunk-size", "7"],
                        "remote_c25": ["--scheduler-file", str(sched_file), "--chunk-size", "25"]
                        }.items():
        out = tmp / f"{name}.zarr"
        res = runner.invoke(main, ["generate", "--config", str(cfg), "--out", str(out)] + extra)
        assert res.exit_code == 0, res.output
        runs[name] = (out, res.output)
    return tmp, cfg, runs


def test_identical_bytes_whatever_workers_chunks_scheduler(tiny_runs):
    _, _, runs = tiny_runs
    stores = {k: _arrays(v[0]) for k, v in runs.items()}
    ref = stores["w1_c16"]
    assert ref["C"].shape == (60, 32, 32) and ref["C"].dtype == np.uint16
    _assert_same(ref, stores["w2_c7"])
    _assert_same(ref, stores["remote_c25"])
    assert zarr.open_group(str(runs["w2_c7"][0]))["C"].chunks[0] == 7
    assert "generate: 60 pairs in" in runs["w1_c16"][1]


def test_store_contents_and_attrs(tiny_runs):
    _, _, runs = tiny_runs
    out = runs["w1_c16"][0]
    g = zarr.open_group(str(out), mode="r")
    a = g.attrs
    assert a["kdeconv_kind"] == "pairs" and a["pipeline"] == "mix_then_normalize"
    assert a["seed"] == 11 and a["n"] == 60 and a["config"]["source"]["n_pure"] == 24
    assert a["augment_columns"][:3] == ["rot90", "flip", "realism"]
    assert g["augment"].shape == (60, len(a["augment_columns"]))
    w = g["weights"][:]
    assert w.dtype == np.float32 and np.allclose(w.sum(axis=1), 1) and (w[:, 0] >= w[:, 1]).all()
    # Rotations are those of the pure patterns the pair was built from.
    ia = g["index_a"][:]
    assert np.array_equal(g["rotation_a"][:], g["pure_rotation"][:][ia])
    q = g["rotation_a"][:]
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert g["masked"][:].any() and not Path(str(out) + ".partial").exists()
    pngs = sorted(Path(str(out) + ".debug").glob("pair_*.png"))
    assert len(pngs) >= 3 and pngs[0].stat().st_size > 1000


def test_append_equals_fresh_and_keeps_existing_chunks(tiny_runs, cli):
    tmp, cfg, runs = tiny_runs
    out = tmp / "append.zarr"
    res = cli("generate", "--config", cfg, "--out", out, "--n", 40, "--workers", 1)
    assert res.exit_code == 0, res.output
    first = out / "C" / "c" / "0" / "0" / "0"
    assert first.exists()
    stamp = first.stat().st_mtime_ns
    before = _arrays(out)
    res = cli("generate", "--config", cfg, "--out", out, "--n", 60, "--workers", 1)
    assert res.exit_code == 0, res.output
    assert "store now holds 60" in res.output
    assert first.stat().st_mtime_ns == stamp  # a full old chunk is not rewritten
    after = _arrays(out)
    _assert_same(after, _arrays(runs["w1_c16"][0]))
    assert np.array_equal(after["C"][:40], before["C"])
    # Same n again: nothing to do. Another seed on the same store: refused.
    res = cli("generate", "--config", cfg, "--out", out, "--n", 60, "--workers", 1)
    assert res.exit_code == 0 and "nothing to do" in res.output
    res = cli("generate", "--config", cfg, "--out", out, "--seed", 3, "--workers", 1)
    assert res.exit_code == 2 and "different config or seed" in res.output


def _map_store(path: Path, masked: bool) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    from kdeconv.io.store import store_attrs
    from kdeconv.preprocess import circular_mask

    rng = np.random.default_rng(3)
    x = gaussian_filter(rng.normal(size=(3, 4, 24, 24)), (0, 0, 1.5, 1.5))
    pats = (20000 + 5000 * x / x.std()).astype(np.uint16)
    if masked:
        pats[..., ~circular_mask((24, 24))] = 0
    g = zarr.open_group(str(path), mode="w")
    g.create_array("patterns", data=pats, chunks=(1, 4, 24, 24))
    g.attrs.update(store_attrs("map", source={"format": "test"}))
    return pats


def test_map_source_with_listed_indices(tmp_path, cli):
    pats = _map_store(tmp_path / "map.zarr", masked=True)
    cfg = _write(tmp_path / "map.yaml", {
        "seed": 1, "n": 30, "chunk_size": 8, "pipeline": "normalize_then_mix",
        "source": {"kind": "map", "path": str(tmp_path / "map.zarr"), "indices": [0, 2, 5, 6, 11]},
        "weights": {"dominant_first": False}})
    out = tmp_path / "pairs.zarr"
    res = cli("generate", "--config", cfg, "--out", out, "--workers", 1)
    assert res.exit_code == 0, res.output
    g = zarr.open_group(str(out), mode="r")
    ia, ib = g["index_a"][:], g["index_b"][:]
    assert set(ia) | set(ib) <= {0, 2, 5, 6, 11} and (ia != ib).all()
    assert np.isnan(g["rotation_a"][:]).all()
    assert g["masked"][:].all()  # the map patterns are pre-masked
    flat = pats.reshape(12, 24, 24).astype(np.float64)
    from kdeconv.preprocess import circular_mask

    m = circular_mask((24, 24))
    for k in range(5):
        p = flat[ia[k]]
        lo, hi = p[m].min(), p[m].max()
        expected = np.where(m, np.clip((p - lo) / (hi - lo), 0, 1), 0)
        assert np.abs(g["A"][k] / 65535 - expected).max() < 1e-4
    w = g["weights"][:]
    assert (w[:, 0] < 0.5).any()  # not dominant-first here
    A, B = g["A"][:] / 65535, g["B"][:] / 65535
    expected = w[:, :1, None] * A + w[:, 1:, None] * B
    assert np.abs(g["C"][:].astype(np.int64) - np.rint(expected * 65535)).max() <= 1


BAD = [
    ({"weights": {"low": -0.2}}, "weights.low"),
    ({"weights": {"low": 0.3, "high": 1.5}}, "weights.high"),
    ({"pipeline": "mix_average"}, "pipeline"),
    ({"source": {"kind": "simulate", "n_pure": 1}}, "empty source"),
    ({"source": {"kind": "map", "path": "MAP", "indices": []}}, "empty source"),
    ({"source": {"kind": "map", "path": "MAP", "indices": [0, 99]}}, "outside the map"),
    ({"source": {"kind": "map", "path": "nowhere.zarr"}}, "store not found"),
    ({"mask": {"radius": 40}}, "larger than the pattern"),
    ({"augment": {"dose": [100, 10]}}, "dose"),
    ({"preprocess": {"resample_to": [4, 4]}}, "resample_to"),
    ({"frobnicate": 1}, "frobnicate"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m for _, m in BAD])
def test_bad_config_exits_2_with_one_line(tmp_path, cli, change, message):
    _map_store(tmp_path / "map.zarr", masked=False)
    data = dict(TINY)
    for key, value in change.items():
        if key == "source" and value.get("path") == "MAP":
            value = dict(value, path=str(tmp_path / "map.zarr"))
        data[key] = value
    out = tmp_path / "pairs.zarr"
    res = cli("generate", "--config", _write(tmp_path / "bad.yaml", data), "--out", out)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_interrupted_run_resumes_from_partial(tiny_runs, cli):
    import shutil

    tmp, cfg, runs = tiny_runs
    ref = runs["w1_c16"][0]
    out = tmp / "resume.zarr"
    staging = Path(str(out) + ".partial")
    shutil.copytree(ref, staging)
    g = zarr.open_group(str(staging), mode="r+")
    # As a run killed after two chunks leaves it: no markers on the later chunks, their data
    # half-written, n_complete (the pairs of a finished store being extended) still 0.
    g.attrs["n_complete"] = 0
    g["chunk_done"][2:] = 0
    g["C"][32:] = 0
    res = cli("generate", "--config", cfg, "--out", out, "--workers", 1)
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output and "generate: 28 pairs" in res.output
    assert not staging.exists()
    _assert_same(_arrays(out), _arrays(ref))


def test_mask_is_on_by_default_and_no_mask_turns_it_off(cli, tmp_path):
    import zarr

    from kdeconv.config.generate import GenerateConfig

    assert GenerateConfig.model_fields["mask"].default.fraction == 1.0
    cfg = _write(tmp_path / "g.yaml", TINY)  # asks for the mask on 40% of pairs
    out = tmp_path / "p.zarr"
    res = cli("generate", "--config", cfg, "--out", out, "--no-mask", "--workers", 1)
    assert res.exit_code == 0, res.output
    g = zarr.open_group(str(out), mode="r")
    assert not g["masked"][:].any()
    assert g.attrs["config"]["mask"]["fraction"] == 0.0


def test_resample_to_gives_the_native_pairs_resampled_as_separate_does(tiny_runs, cli):
    """Pairs mixed at the detector's 32x32 and resampled to 48x48 afterwards: the same draws and
    the native store's C, A and B through ``kdeconv.preprocess.resample`` (masked pairs zeroed
    outside the mask at 48x48); the store says 48x48 and claims no fixed detector."""
    from kdeconv.mixing import from_uint16, to_uint16
    from kdeconv.preprocess import circular_mask
    from kdeconv.preprocess.resample import resample

    tmp, _, runs = tiny_runs
    native = _arrays(runs["w1_c16"][0])
    cfg = _write(tmp / "up.yaml", dict(TINY, preprocess={"resample_to": [48, 48]}))
    out = tmp / "up.zarr"
    res = cli("generate", "--config", cfg, "--out", out, "--workers", 1, "--chunk-size", 16)
    assert res.exit_code == 0, res.output
    up = _arrays(out)
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["pattern_shape"] == [48, 48] and attrs.get("detector") is None
    for k in ("weights", "index_a", "index_b", "masked", "augment"):
        assert np.array_equal(up[k], native[k], equal_nan=True), k
    masked = native["masked"]
    assert masked.any() and not masked.all()
    for k in ("C", "A", "B"):
        expected = np.clip(resample(from_uint16(native[k]), (48, 48)), 0, 1)
        expected[masked] *= circular_mask((48, 48))
        assert up[k].shape == (60, 48, 48)
        assert np.array_equal(up[k], to_uint16(expected)), k
