"""Damaged stores are refused before anything is read (a missing chunk would read as zeros), and
blank frames are left empty instead of being separated into two invented crystals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
import zarr
from reliability_data import digest, no_output, patterns, refused


@pytest.fixture
def damaged_map(tmp_path, map_store):
    """``damaged_map(how)``: a copy of the shared map with one chunk deleted, its shape enlarged
    in zarr.json, or zarr.json cut short."""

    def make(how: str):
        path = tmp_path / f"{how}.zarr"
        shutil.copytree(map_store, path)
        meta = path / "patterns" / "zarr.json"
        if how == "missing":
            (path / "patterns" / "c" / "1" / "0" / "0" / "0").unlink()
        elif how == "enlarged":
            info = json.loads(meta.read_text())
            info["shape"][0] += 2
            meta.write_text(json.dumps(info))
        elif how == "truncated":
            meta.write_text(meta.read_text()[:40])
        return path

    return make


def test_separate_refuses_a_map_with_a_missing_chunk(cli, sched, damaged_map, tmp_path):
    store = damaged_map("missing")
    before = digest(store)
    out = tmp_path / "sep.zarr"
    refused(cli("separate", store, "--out", out, *sched), 2, "damaged", "patterns/c/1/0/0/0", "missing")
    no_output(out)
    assert digest(store) == before


def test_separate_refuses_an_enlarged_shape(cli, sched, damaged_map, tmp_path):
    out = tmp_path / "sep.zarr"
    refused(cli("separate", damaged_map("enlarged"), "--out", out, *sched), 2, "patterns/c/3/0/0/0")
    no_output(out)


def test_truncated_array_metadata_is_one_line(cli, sched, damaged_map, tmp_path):
    store = damaged_map("truncated")
    out = tmp_path / "sep.zarr"
    refused(cli("separate", store, "--out", out, *sched), 2, "patterns/zarr.json", "unreadable")
    refused(cli("export", store, tmp_path / "o.tif"), 2, "patterns/zarr.json")
    no_output(out, tmp_path / "o.tif")


@pytest.mark.parametrize("suffix", [".tif", ".up2", ".h5"])
def test_export_refuses_a_missing_chunk(cli, sched, damaged_map, tmp_path, suffix):
    out = tmp_path / f"o{suffix}"
    refused(cli("export", damaged_map("missing"), out, *sched), 2, "missing")
    no_output(out)


def test_generate_refuses_a_map_source_with_a_missing_chunk(cli, sched, damaged_map, tmp_path):
    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump({"n": 8, "chunk_size": 4, "source": {
        "kind": "map", "path": str(damaged_map("missing"))}}))
    out = tmp_path / "pairs.zarr"
    refused(cli("generate", "--config", config, "--out", out, *sched), 2, "missing")
    no_output(out)


def test_evaluate_and_export_refuse_a_separated_store_with_a_missing_chunk(cli, sched, map_store, tmp_path):
    separated = tmp_path / "sep.zarr"
    done = cli("separate", map_store, "--out", separated, *sched)
    assert done.exit_code == 0, done.output + done.stderr
    (separated / "A" / "c" / "2" / "0" / "0" / "0").unlink()
    truth = _truth_store(tmp_path / "truth.zarr", zarr.open_group(str(map_store))["patterns"][...])
    report = tmp_path / "report"
    refused(cli("evaluate", separated, "--truth", truth, "--out", report, "--no-index"), 2,
            "A/c/2/0/0/0")
    refused(cli("export", separated, tmp_path / "a.tif", "--array", "A"), 2, "A/c/2/0/0/0")
    no_output(report, tmp_path / "a.tif")


def _truth_store(path, data):
    from kdeconv.io.store import store_attrs

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("truth"))
    weights = np.tile(np.array([0.7, 0.3], np.float32), data.shape[:2] + (1,))
    for name, values in {"A": data, "B": data[..., ::-1], "weights": weights}.items():
        group.create_array(name, data=np.ascontiguousarray(values), chunks=(1,) + values.shape[1:])
    return path


def test_every_chunk_is_written_even_when_it_equals_the_fill_value(cli, sched, tmp_path):
    from kdeconv.io import write_up2

    data = patterns((4, 5, 16, 16))
    data[2] = 0  # a whole chunk of zeros (Zarr skips those by default)
    up2 = write_up2(tmp_path / "z.up2", data)
    out = tmp_path / "z.zarr"
    done = cli("ingest", up2, out, "--chunk-mb", 16 * 16 * 2 * 5 / 2**20, *sched)
    assert done.exit_code == 0, done.output + done.stderr
    array = zarr.open_group(str(out))["patterns"]
    assert array.chunks[:2] == (1, 5) and array.nchunks_initialized == array.nchunks == 4
    np.testing.assert_array_equal(array[...], data)


# ------------------------------------------------------------------ blank frames (case 6)

def test_blank_frames_are_left_empty_flagged_and_kept_out_of_the_background(cli, sched, map_with_blanks,
                                                                            tmp_path):
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.separate.driver import static_background_from_mean

    path, data = map_with_blanks
    out = tmp_path / "sep.zarr"
    done = cli("separate", path, "--out", out, *sched)
    assert done.exit_code == 0, done.output + done.stderr
    assert "8 blank frames left empty" in done.output
    group = zarr.open_group(str(out))
    blank = np.zeros((4, 6), bool)
    blank[0, 2] = blank[1, 5] = True
    blank[3] = True
    np.testing.assert_array_equal(group["blank"][...], blank)
    assert group.attrs["blank_frames"] == 8
    a, b, w = group["A"][...], group["B"][...], group["weights"][...]
    assert not a[blank].any() and not b[blank].any() and np.isnan(w[blank]).all()
    assert np.isfinite(w[~blank]).all() and a[~blank].any(axis=(1, 2)).all()
    # The map-mean static background is the mean of the frames that are not blank.
    mean = data[~blank].mean(axis=0, dtype=np.float64)
    expected = static_background_from_mean(mean, SeparateConfig().background.static_smooth_std)
    np.testing.assert_allclose(group["static_background"][...], expected, rtol=1e-6)
    for name in ("A", "B", "weights", "blank"):  # the all-empty chunk is written, not skipped
        assert group[name].nchunks_initialized == group[name].nchunks, name


def test_the_kernel_gives_blank_frames_to_no_model():
    from kdeconv.separate.chunk import blank_frames, separate_patterns

    class Counting:
        seen = 0

        def separate(self, batch):
            Counting.seen += len(batch)
            return batch, batch[:, ::-1], np.tile([[0.7, 0.3]], (len(batch), 1)).astype(np.float32)

    block = patterns((2, 3, 16, 16))
    block[0, 1] = 7
    assert blank_frames(block).sum() == 1
    a, b, w = separate_patterns(block, Counting(), batch_size=4, background={"static": "none"})
    assert Counting.seen == 5 and not a[0, 1].any() and np.isnan(w[0, 1]).all()
