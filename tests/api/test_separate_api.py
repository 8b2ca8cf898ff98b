"""``kdeconv.separate(data)`` on every kind of input, against one in-memory reference: numpy,
Dask, EBSD and LazyEBSD signals, map stores and vendor files, in process and on a cluster; and
its store against the one ``kdeconv separate`` writes."""

from __future__ import annotations

import numpy as np
import pytest
from same_store import assert_same_store

import kdeconv
from kdeconv.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def nickel():
    import kikuchipy as kp

    return kp.data.nickel_ebsd_small()  # 3x3 patterns of 60x60, uint8, with a detector


@pytest.fixture(scope="module")
def reference(nickel):
    """The in-memory separation every other input must reproduce."""
    return kdeconv.separate(nickel.data, progress=False)


@pytest.fixture(scope="module")
def client(dask_processes):
    from distributed import Client

    with Client(dask_processes[0], timeout="30s") as client:
        yield client


@pytest.fixture(scope="module")
def map_files(nickel, tmp_path_factory, dask_processes):
    """The same patterns as an EDAX UP1 file and, ingested, as a map store."""
    from kdeconv.config.cluster import ClusterConfig
    from kdeconv.io import write_up1

    folder = tmp_path_factory.mktemp("nickel")
    up1 = write_up1(folder / "nickel.up1", nickel.data, 1.5, 1.5)
    result = kdeconv.ingest({"input": str(up1), "output": str(folder / "map.zarr")},
                            ClusterConfig(scheduler_address=dask_processes[0]), echo=lambda *_: None)
    assert result.patterns == 9 and result.shape == (3, 3, 60, 60) and result.format == "edax_binary"
    return up1, result.out


def same(result, reference):
    for name in ("A", "B"):
        got = getattr(getattr(result, name), "data", getattr(result, name))
        np.testing.assert_array_equal(np.asarray(got), reference_array(reference, name))
    np.testing.assert_array_equal(np.asarray(result.weights), np.asarray(reference.weights))
    np.testing.assert_array_equal(np.asarray(result.blank), np.asarray(reference.blank))


def reference_array(reference, name):
    return np.asarray(getattr(reference, name))


def test_a_numpy_map_gives_arrays_of_its_shape_and_dtype(nickel, reference):
    assert isinstance(reference.A, np.ndarray) and not reference.lazy
    assert reference.A.shape == reference.B.shape == nickel.data.shape
    assert reference.A.dtype == reference.B.dtype == np.uint8
    assert reference.weights.shape == (3, 3, 2) and reference.weights.dtype == np.float32
    np.testing.assert_allclose(reference.weights.sum(axis=-1), 1, atol=1e-6)
    assert (reference.weights[..., 0] >= reference.weights[..., 1]).all()  # A is dominant
    assert reference.blank.shape == (3, 3) and not reference.blank.any()
    # the shipped model runs patterns outside its 120-160 px range at 120 px; A and B come back at 60
    assert reference.background == "raw" and reference.work_shape == (120, 120)


def test_an_ebsd_signal_gives_signals_that_keep_its_detector_and_axes(nickel, reference):
    import kikuchipy as kp

    result = kdeconv.separate(nickel, progress=False)
    for signal in (result.A, result.B):
        assert isinstance(signal, kp.signals.EBSD) and not isinstance(signal, kp.signals.LazyEBSD)
        np.testing.assert_array_equal(signal.detector.pc, nickel.detector.pc)
        assert signal.detector.binning == nickel.detector.binning
        axes, given = signal.axes_manager.navigation_axes, nickel.axes_manager.navigation_axes
        assert [(a.name, a.scale, a.units) for a in axes] == [(a.name, a.scale, a.units) for a in given]
    same(result, reference)


def test_a_dask_array_stays_lazy_until_computed(nickel, reference):
    import dask.array as da

    # The model's batches follow the chunks: the same chunks give the same bits.
    result = kdeconv.separate(da.from_array(nickel.data, chunks=(3, 3, 60, 60)), progress=False)
    assert result.lazy and isinstance(result.A, da.Array) and isinstance(result.weights, da.Array)
    same(result.compute(), reference)
    rows = kdeconv.separate(da.from_array(nickel.data, chunks=(1, 3, 60, 60)), progress=False)
    assert rows.A.chunks[:2] == ((1, 1, 1), (3,))
    np.testing.assert_allclose(rows.weights.compute(), reference.weights, atol=1e-6)


def test_a_lazy_signal_on_a_distributed_client_gives_identical_numbers(nickel, reference, client):
    import kikuchipy as kp

    result = kdeconv.separate(nickel.as_lazy(), client=client, progress=False)
    assert isinstance(result.A, kp.signals.LazyEBSD) and result.lazy
    computed = result.compute()
    assert isinstance(computed.B, kp.signals.EBSD) and not isinstance(computed.B, kp.signals.LazyEBSD)
    same(computed, reference)


def test_a_map_store_path_and_a_vendor_file_path(map_files, reference, client):
    up1, store = map_files
    for path in (store, up1, str(up1)):
        result = kdeconv.separate(path, client=client, progress=False)
        assert result.lazy
        same(result.compute(), reference)


def test_to_zarr_writes_what_kdeconv_separate_writes(map_files, client, cli, tmp_path, dask_processes):
    import zarr

    _, store = map_files
    by_cli = tmp_path / "cli.zarr"
    r = cli("separate", store, "--out", by_cli, "--scheduler-address", dask_processes[0])
    assert r.exit_code == 0, r.output
    by_api = kdeconv.separate(store, client=client, progress=False).to_zarr(tmp_path / "api.zarr")
    assert_same_store(by_api, by_cli)
    assert zarr.open_group(str(by_api)).attrs["config"] == zarr.open_group(str(by_cli)).attrs["config"]


def test_to_zarr_of_in_memory_input_is_a_separated_store(reference, tmp_path, cli):
    from kdeconv.io.store import open_store

    out = reference.to_zarr(tmp_path / "sep.zarr")
    group = open_store(out, "separated", arrays=("A", "B", "weights", "blank"))
    np.testing.assert_array_equal(group["A"][...], reference.A)
    np.testing.assert_array_equal(group["weights"][...], reference.weights)
    assert group.attrs["source"]["format"] == "numpy array" and group.attrs["blank_frames"] == 0
    with pytest.raises(InputError, match="exists"):
        reference.to_zarr(out)
    r = cli("export", out, tmp_path / "b.tif", "--array", "B")  # readable by export
    assert r.exit_code == 0, r.output


def test_a_signal_normalized_by_kikuchipy_separates_as_processed(nickel):
    # normalize_intensity leaves zero-mean floats: no detector background, no dark screen to find
    import dask

    processed = nickel.deepcopy()
    with dask.config.set(scheduler="synchronous"):  # kikuchipy's own steps, off the module's client
        processed.remove_static_background(show_progressbar=False)
        processed.remove_dynamic_background(show_progressbar=False)
        normalized = processed.deepcopy()
        normalized.normalize_intensity(dtype_out=np.float32, show_progressbar=False)
    data = normalized.data
    stretched = (data - data.min(axis=(-2, -1), keepdims=True)) / np.ptp(data, axis=(-2, -1), keepdims=True)
    result = kdeconv.separate(normalized, progress=False)
    want = kdeconv.separate(stretched.astype(np.float32), progress=False)
    assert result.background == "processed" and want.background == "processed"
    np.testing.assert_allclose(np.asarray(result.weights), np.asarray(want.weights), atol=1e-4)


def test_a_detector_the_model_does_not_know_is_said_as_the_cli_says_it(nickel):
    # kikuchipy's real Ni patterns read as near-equal mixtures: a stack of 18 warns at once
    stack = np.concatenate([nickel.data.reshape(9, 60, 60)] * 2)
    with pytest.warns(UserWarning, match=r"near-equal mixtures.*adapt=True"):
        kdeconv.separate(stack, progress=False)
    # a lazy separation says it when computed
    import dask.array as da

    lazy = kdeconv.separate(da.from_array(stack, chunks=(9, 60, 60)), progress=False)
    with pytest.warns(UserWarning, match="near-equal mixtures"):
        lazy.compute()


def test_plot_draws_the_minority_weight(reference):
    import matplotlib

    matplotlib.use("Agg")
    ax = reference.plot()
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(image, reference.weights[..., 1])


def test_inputs_it_cannot_take_are_one_line_errors(nickel):
    with pytest.raises(InputError, match="navigation axis"):
        kdeconv.separate(nickel.data[0, 0], progress=False)
    with pytest.raises(TypeError, match="kikuchipy EBSD signal"):
        kdeconv.separate({"patterns": 1}, progress=False)
    with pytest.raises(InputError, match="input not found"):
        kdeconv.separate("no/such/file.up2", progress=False)
