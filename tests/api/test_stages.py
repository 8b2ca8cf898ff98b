"""The Python API of every stage: ``import kdeconv`` stays light, stages are callable with a
config model, a dict or a YAML path and return small dataclasses, and the CLI writes the very
stores the API writes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import yaml
from same_store import assert_same_store

import kdeconv
from kdeconv.config.cluster import ClusterConfig

FIXED = {
    "seed": 3, "n": 40, "chunk_size": 16,
    "source": {"kind": "simulate", "master": {"kind": "nickel"}, "n_pure": 12, "shape": [32, 32],
               "pc_x": [0.5, 0.5], "pc_y": [0.45, 0.45], "pc_z": [0.55, 0.55],
               "sample_tilt": [70, 70], "camera_tilt": [0, 0]},
    "augment": {"realism": True},
}


def test_import_kdeconv_loads_no_torch_dask_or_kikuchipy():
    code = ("import sys, kdeconv; kdeconv.InputError; kdeconv.__version__; "
            "heavy = [m for m in ('torch', 'dask', 'distributed', 'kikuchipy', 'hyperspy', 'zarr') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_stages_are_callable_and_named_lazily():
    import kdeconv.separate.chunk  # noqa: F401  (the package attribute is the module, still callable)
    from kdeconv.generate.driver import run as generate_run
    from kdeconv.separate.driver import run as separate_run
    from kdeconv.separate.separation import separate

    assert callable(kdeconv.separate) and kdeconv.separate.separate is separate
    assert kdeconv.separate.run is separate_run and kdeconv.generate.run is generate_run
    for stage in ("generate", "train", "adapt", "evaluate", "ingest", "export"):
        assert callable(getattr(kdeconv, stage)), stage
    assert kdeconv.DetectorSpec.__name__ == "DetectorSpec"
    assert not hasattr(kdeconv, "no_such_name")


def test_generate_from_the_cli_and_from_python_are_byte_identical(cli, tmp_path, dask_processes):
    import zarr

    config = tmp_path / "fixed.yaml"
    config.write_text(yaml.safe_dump(FIXED))
    by_cli = tmp_path / "cli.zarr"
    r = cli("generate", "--config", config, "--out", by_cli, "--scheduler-file", dask_processes[1])
    assert r.exit_code == 0, r.output
    cluster = ClusterConfig(scheduler_file=str(dask_processes[1]))
    result = kdeconv.generate(config, out=tmp_path / "api.zarr", cluster=cluster, echo=lambda *_: None)
    assert (result.pairs, result.total, result.pure) == (40, 40, 12) and result.seconds > 0
    assert_same_store(result.out, by_cli)
    # a fixed geometry is written as the store's detector, as simulate-map writes its own
    detector = zarr.open_group(str(by_cli)).attrs["detector"]
    assert detector["shape"] == [32, 32] and detector["pc"] == [0.5, 0.45, 0.55]
    again = kdeconv.generate(dict(FIXED), out=result.out, cluster=cluster, echo=lambda *_: None)
    assert again.pairs == 0 and again.total == 40  # the finished store already holds them


def write_map(path, nav_shape, nav_chunk, sig_shape=(32, 32)):
    """A map store as ``kdeconv ingest`` lays it out, of smooth blobs on a sloped background."""
    import zarr

    from kdeconv.io.store import store_attrs

    rng = np.random.default_rng(2)
    y, x = np.mgrid[:sig_shape[0], :sig_shape[1]]
    centres = rng.random((int(np.prod(nav_shape)), 2)) * sig_shape
    blobs = np.exp(-((y - centres[:, :1, None]) ** 2 + (x - centres[:, 1:, None]) ** 2) / 40.0)
    patterns = np.rint((0.3 + 0.2 * y / sig_shape[0] + blobs) * 30000).astype(np.uint16)
    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("map", source={"format": "test"}))
    group.create_array("patterns", data=patterns.reshape(tuple(nav_shape) + tuple(sig_shape)),
                       chunks=tuple(nav_chunk) + tuple(sig_shape))
    return path


def test_separate_from_the_cli_and_from_python_are_byte_identical(cli, tmp_path, dask_processes):
    store = write_map(tmp_path / "map.zarr", (4, 5), (2, 5))
    address = ["--scheduler-address", dask_processes[0]]
    by_cli = tmp_path / "cli.zarr"
    r = cli("separate", store, "--out", by_cli, "--batch-size", "7", *address)
    assert r.exit_code == 0, r.output
    config = {"batch_size": 7}
    cluster = ClusterConfig(scheduler_address=dask_processes[0])
    result = kdeconv.separate.run(config, map_store=store, out=tmp_path / "api.zarr", cluster=cluster,
                                  echo=lambda *_: None)
    assert (result.patterns, result.total, result.chunks) == (20, 20, 2)
    assert [p.name for p in result.report_files] == ["api.zarr.weights.png", "api.zarr.panels.png"]
    assert_same_store(result.out, by_cli)


def test_ingest_and_export_take_a_dict_and_say_what_they_did(tmp_path, dask_processes):
    from kdeconv.io import write_up2

    data = np.random.default_rng(0).integers(0, 60000, (2, 3, 16, 16), dtype=np.uint16)
    up2 = write_up2(tmp_path / "m.up2", data, 0.5, 0.5)
    cluster = ClusterConfig(scheduler_address=dask_processes[0])
    ingested = kdeconv.ingest({"input": str(up2), "output": str(tmp_path / "m.zarr")}, cluster,
                              echo=lambda *_: None)
    assert (ingested.patterns, ingested.shape, ingested.dtype) == (6, (2, 3, 16, 16), "uint16")
    out = tmp_path / "again.up2"
    exported = kdeconv.export({"store": str(ingested.out), "output": str(out)}, cluster, echo=lambda *_: None)
    assert (exported.out, exported.patterns, exported.format) == (out, 6, "edax_binary")
    assert out.read_bytes() == up2.read_bytes()
