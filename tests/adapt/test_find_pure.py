"""``find_pure`` on map stores: scored against simulated truth, determinism, refusals, and the
user-given pure-pattern files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pure_maps import score, write_map

from kdeconv.adapt import PureSelection, find_pure, map_features, read_pure_file
from kdeconv.errors import InputError

PRECISION, COVERAGE = 0.98, 0.80


@pytest.mark.parametrize("dose", [1500.0, 300.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_pure_patterns_are_pure_and_cover_the_grains(sim_map, tmp_path, dose, seed):
    # The same parameters at two noise levels: the threshold adapts to each map.
    sim = sim_map(dose=dose, seed=seed)
    store = write_map(tmp_path / "map.zarr", sim.counts, (6, 24))
    found = find_pure(store)
    precision, coverage = score(sim, found.indices)
    print(f"dose {dose:g} seed {seed}: precision {precision:.3f} coverage {coverage:.2f} "
          f"threshold {found.threshold:.3f}; {found.summary()}")
    assert precision >= PRECISION and coverage >= COVERAGE
    assert found.n_chosen == len(found.indices) == len(found.grains) > 0
    assert found.labels.shape == (24, 24)
    np.testing.assert_array_equal(found.grains, found.labels.reshape(-1)[found.indices])
    assert found.n_grains <= found.n_regions and found.n_candidates >= found.n_chosen


def test_threshold_is_lower_for_noisier_maps(sim_map, tmp_path):
    thresholds = [find_pure(write_map(tmp_path / f"{dose}.zarr", sim_map(dose=dose, seed=0).counts,
                                      (24, 24))).threshold for dose in (1500.0, 300.0)]
    assert thresholds[1] < thresholds[0] - 0.03


def test_same_seed_same_patterns_whatever_the_chunks_and_workers(sim_map, tmp_path):
    from distributed import Client, LocalCluster

    counts = sim_map(dose=300.0, seed=1).counts
    rows = write_map(tmp_path / "rows.zarr", counts, (5, 24))
    pieces = write_map(tmp_path / "pieces.zarr", counts, (1, 7))
    reference = find_pure(rows, seed=3)
    np.testing.assert_array_equal(find_pure(rows, seed=3).indices, reference.indices)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        distributed = find_pure(pieces, seed=3, client=client)
    np.testing.assert_array_equal(distributed.indices, reference.indices)
    np.testing.assert_array_equal(distributed.labels, reference.labels)
    other = find_pure(rows, seed=4)
    assert set(other.grains.tolist()) == set(reference.grains.tolist())  # same grains, other picks


def test_too_few_grains_is_refused(sim_map, tmp_path):
    sim = sim_map(dose=1500.0, seed=2, n_grains=2, nav_shape=(12, 12))
    store = write_map(tmp_path / "two.zarr", sim.counts, (12, 12))
    refusal = r"in 2 grain\(s\).*fewer than the 4 needed.*--pure FILE.*--references"
    with pytest.raises(InputError, match=refusal):
        find_pure(store)
    assert find_pure(store, min_grains=2).n_grains == 2


def test_line_scan(sim_map, tmp_path):
    sim = sim_map(dose=1500.0, seed=3, n_grains=6, nav_shape=(1, 72))
    store = write_map(tmp_path / "line.zarr", sim.counts[0], (20,))
    found = find_pure(store, min_grains=3, min_region=5)
    precision, coverage = score(sim, found.indices)
    print(f"line scan: precision {precision:.3f} coverage {coverage:.2f}; {found.summary()}")
    assert found.labels.shape == (72,) and found.nav_shape == (72,)
    assert found.positions().shape == (found.n_chosen, 1)
    assert precision >= PRECISION and found.n_grains >= 3


def test_patterns_already_background_corrected(sim_map, tmp_path):
    from kdeconv.separate.chunk import preprocess_patterns
    from kdeconv.separate.driver import static_background_from_mean

    sim = sim_map(dose=300.0, seed=0)
    counts = sim.counts.reshape((-1,) + sim.counts.shape[2:])
    static_bg = static_background_from_mean(counts.mean(axis=0), "auto")
    corrected = preprocess_patterns(counts, {"static": "map_mean", "static_operation": "subtract",
                                             "dynamic": True, "dynamic_operation": "subtract"}, static_bg)
    store = write_map(tmp_path / "processed.zarr", corrected.reshape(sim.counts.shape), (12, 24))
    found = find_pure(store, background={"static": "none", "dynamic": False})
    precision, coverage = score(sim, found.indices)
    assert found.background["static"] == "none" and found.background["dynamic"] is False
    assert precision >= PRECISION and coverage >= COVERAGE
    # The features match those of the raw map with separate's default preprocessing.
    raw_features, settings = map_features(write_map(tmp_path / "raw.zarr", sim.counts, (24, 24)))
    done_features, _ = map_features(store, background={"static": "none", "dynamic": False})
    assert settings["static"] == "map_mean" and settings["dynamic"] is True
    np.testing.assert_allclose(raw_features, done_features, atol=1e-4)


def test_second_vote_vetoes_what_the_model_calls_mixed(sim_map, tmp_path):
    sim = sim_map(dose=300.0, seed=1)
    store = write_map(tmp_path / "map.zarr", sim.counts, (24, 24))
    plain = find_pure(store)
    predicted = np.zeros(sim.grain.shape)
    vetoed_grain = int(plain.grains[0])
    predicted[plain.labels == vetoed_grain] = 0.4
    voted = find_pure(store, predicted_minority=predicted, max_minority=0.1)
    assert vetoed_grain not in voted.grains.tolist()
    assert set(voted.grains.tolist()) == set(plain.grains.tolist()) - {vetoed_grain}
    with pytest.raises(InputError, match="do not match"):
        find_pure(store, predicted_minority=predicted[:3])


def test_summary_and_provenance(sim_map, tmp_path):
    found = find_pure(write_map(tmp_path / "map.zarr", sim_map(dose=1500.0, seed=0).counts, (24, 24)))
    assert isinstance(found, PureSelection)
    line = found.summary()
    assert line.startswith(f"find pure: {found.n_chosen} pure patterns from {found.n_grains} grains "
                           f"({found.n_candidates} candidates in {found.n_grains} of {found.n_regions}")
    assert "\n" not in line
    record = json.loads(json.dumps(found.to_json()))
    assert record["indices"] == found.indices.tolist() and record["n_chosen"] == found.n_chosen
    assert record["positions"][0] == list(np.unravel_index(found.indices[0], (24, 24)))


def test_bad_maps_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        find_pure(tmp_path / "missing.zarr")
    patterns = np.ones((4, 4, 16, 16), np.float32)
    patterns[1, 2, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        find_pure(write_map(tmp_path / "nan.zarr", patterns, (2, 4)), background={"static": "none"})
    with pytest.raises(InputError, match="background must be 'auto'"):
        find_pure(write_map(tmp_path / "ok.zarr", np.ones((4, 4, 16, 16), np.uint8), (4, 4)),
                  background="static")


def test_real_nickel_map_two_grains(tmp_path):
    """kikuchipy's real 3x3 Ni map: patterns 0, 3, 6 (first column) are one grain, the rest another."""
    import kikuchipy as kp

    patterns = kp.data.nickel_ebsd_small().data
    store = write_map(tmp_path / "ni.zarr", patterns, (3, 3))
    # A map three pixels wide: every pixel touches the other grain or the scan edge.
    found = find_pure(store, min_grains=2, min_region=3, min_distance=1, core_fraction=0.3)
    print(f"nickel_ebsd_small: labels {found.labels.tolist()}, chosen {found.indices.tolist()} "
          f"(grains {found.grains.tolist()}); {found.summary()}")
    first_column = found.labels[:, 0]
    rest = found.labels[:, 1:]
    assert len(set(first_column.tolist())) == 1 and len(set(rest.reshape(-1).tolist())) == 1
    assert first_column[0] != rest[0, 0] and first_column[0] >= 0 and rest[0, 0] >= 0
    assert found.n_grains == 2
    chosen_first = {i for i in found.indices.tolist() if i % 3 == 0}
    assert chosen_first and chosen_first <= {0, 3, 6}
    with pytest.raises(InputError, match="fewer than the 2 needed"):
        find_pure(store, min_grains=2)  # the defaults ask for wider grains


# --------------------------------------------------------------------------- user-given files

NAV = (4, 5)


def test_read_text_lists(tmp_path):
    flat = tmp_path / "flat.txt"
    flat.write_text("# pure patterns\n3\n7\n\n3\n12  # again\n")
    np.testing.assert_array_equal(read_pure_file(flat, NAV), [3, 7, 12])
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("row,col\n0,3\n2;1\n3\t4\n")
    np.testing.assert_array_equal(read_pure_file(pairs, NAV), [3, 11, 19])
    np.testing.assert_array_equal(read_pure_file(flat, (20,)), [3, 7, 12])


def test_read_npy_indices_pairs_and_mask(tmp_path):
    np.save(tmp_path / "flat.npy", np.array([5, 1]))
    np.testing.assert_array_equal(read_pure_file(tmp_path / "flat.npy", NAV), [1, 5])
    np.save(tmp_path / "pairs.npy", np.array([[1, 0], [3, 4]], np.int32))
    np.testing.assert_array_equal(read_pure_file(tmp_path / "pairs.npy", NAV), [5, 19])
    mask = np.zeros(NAV, bool)
    mask[1, 2] = mask[3, 0] = True
    np.save(tmp_path / "mask.npy", mask)
    np.testing.assert_array_equal(read_pure_file(tmp_path / "mask.npy", NAV), [7, 15])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_read_mask_images(tmp_path, suffix):
    image = np.zeros(NAV, np.uint8)
    image[0, 4] = image[2, 2] = 255
    path = tmp_path / f"mask{suffix}"
    if suffix == ".tif":
        import tifffile

        tifffile.imwrite(str(path), image)
    else:
        import imageio.v3 as iio

        iio.imwrite(str(path), np.stack([image] * 3, axis=-1))  # RGB, as an editor saves it
    np.testing.assert_array_equal(read_pure_file(path, NAV), [4, 12])


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "not found"),
    ("out.txt", "3\n20\n", "index 20 is outside the map of 20 patterns"),
    ("pixel.csv", "4,5\n", r"pixel \(4, 5\) is outside the map 4x5"),
    ("words.txt", "3\nseven\n", "line 2: not a number"),
    ("mixed.txt", "3\n1,2\n", "one flat index or a"),
    ("float.txt", "2.5\n", "whole numbers"),
    ("empty.txt", "# nothing\n", "lists no pure patterns"),
    ("list.json", "[1, 2]", "unknown pure-pattern file type"),
])
def test_bad_text_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        read_pure_file(path, NAV)
    assert name in str(err.value)


def test_bad_arrays_and_images_name_the_file(tmp_path):
    np.save(tmp_path / "shape.npy", np.zeros((5, 4), bool))
    with pytest.raises(InputError, match=r"shape.npy: mask shape \(5, 4\) does not match"):
        read_pure_file(tmp_path / "shape.npy", NAV)
    np.save(tmp_path / "none.npy", np.zeros(NAV, bool))
    with pytest.raises(InputError, match="none.npy selects no pure patterns"):
        read_pure_file(tmp_path / "none.npy", NAV)
    np.save(tmp_path / "floats.npy", np.zeros(3))
    with pytest.raises(InputError, match="floats.npy: expected flat indices"):
        read_pure_file(tmp_path / "floats.npy", NAV)
    np.save(tmp_path / "pairs.npy", np.array([[0, 1]]))
    with pytest.raises(InputError, match="pairs.npy: .*line scan"):
        read_pure_file(tmp_path / "pairs.npy", (20,))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read pure-pattern file .*broken.png"):
        read_pure_file(tmp_path / "broken.png", NAV)
