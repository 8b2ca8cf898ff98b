"""Damaged inputs are refused with one line (exit 2), the input untouched and no output left."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest
import tifffile
import zarr
from reliability_data import (
    KDECONV,
    KIKUCHIPY_DATA,
    can_drop_permissions,
    digest,
    drop_file_permissions,
    no_output,
    patterns,
    refused,
    subprocess_env,
)

from kdeconv.io import write_up2

EDAX = KIKUCHIPY_DATA / "edax_binary"


def _cut(source, path, size):
    path.write_bytes(source.read_bytes()[:size])
    return path


# ------------------------------------------------------------------ vendor files (case 1, 12)

def test_hexagonal_up2_cut_mid_pattern_is_refused(cli, tmp_path):
    # 10 patterns of 60x60 uint16 after a 42-byte header; the hexagonal grid has no count in the
    # header: cut at 5.5 patterns it used to read as 5.
    cut = _cut(EDAX / "edax_binary.up2", tmp_path / "cut.up2", 39642)
    before = digest(cut)
    out = tmp_path / "o.zarr"
    refused(cli("ingest", cut, out), 2, "cut.up2", "truncated", "not a whole number of patterns")
    no_output(out)
    assert digest(cut) == before


def test_up1_cut_mid_pattern_is_refused(cli, tmp_path):
    cut = _cut(EDAX / "edax_binary.up1", tmp_path / "cut.up1", 20000)  # 5.55 of 9 patterns
    out = tmp_path / "o.zarr"
    refused(cli("ingest", cut, out), 2, "cut.up1", "not a whole number of patterns")
    no_output(out)


def _claim_rows(path, ny):
    """Rewrite the UP2 header's row count (nx at byte 17, ny at 21)."""
    data = bytearray(path.read_bytes())
    data[21:25] = struct.pack("<I", ny)
    path.write_bytes(bytes(data))


def test_header_count_and_file_size_must_agree(cli, sched, tmp_path):
    path = write_up2(tmp_path / "m.up2", patterns((12, 20, 8, 8)))  # 240 patterns
    _claim_rows(path, 6)  # the header now claims 120 of the 240
    out = tmp_path / "o.zarr"
    refused(cli("ingest", path, out, *sched), 2, "120", "240", "--allow-size-mismatch")
    no_output(out)
    # On request, a file longer than its header says is read as the header says, with a warning.
    done = cli("ingest", path, out, "--allow-size-mismatch", *sched)
    assert done.exit_code == 0, done.output + done.stderr
    assert "Warning:" in done.output and "reading the first 120" in done.output
    assert zarr.open_group(str(out))["patterns"].shape == (6, 20, 8, 8)


def test_file_shorter_than_its_header_is_refused(cli, tmp_path):
    path = write_up2(tmp_path / "m.up2", patterns((12, 20, 8, 8)))
    short = _cut(path, tmp_path / "short.up2", 42 + 200 * 128)  # 200 whole patterns of 240
    out = tmp_path / "o.zarr"
    line = refused(cli("ingest", short, out, "--allow-size-mismatch"), 2, "truncated", "240", "200")
    assert "12x20" in line
    no_output(out)


@pytest.mark.parametrize("size", [100, 20000])
def test_truncated_ebsp_is_said_so(cli, tmp_path, size):
    cut = _cut(KIKUCHIPY_DATA / "oxford_binary" / "patterns.ebsp", tmp_path / "cut.ebsp", size)
    out = tmp_path / "o.zarr"
    line = refused(cli("ingest", cut, out), 2, "cut.ebsp", "truncated")
    assert "out of bounds" not in line
    no_output(out)


# ------------------------------------------------------------------ TIFF and image folders (2, 7)

def test_tiff_written_page_by_page_is_read_whole(cli, sched, tmp_path):
    data = patterns((6, 60, 60))
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        for page in data:
            tif.write(page)  # each page its own series
    out = tmp_path / "o.zarr"
    done = cli("ingest", path, out, *sched)
    assert done.exit_code == 0, done.output + done.stderr
    assert "(6, 60, 60)" in done.output
    np.testing.assert_array_equal(zarr.open_group(str(out))["patterns"][...], data)


def test_tiff_pages_of_mixed_shape_are_refused(cli, tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(patterns((60, 60)))
        tif.write(patterns((40, 40)))
    out = tmp_path / "o.zarr"
    refused(cli("ingest", path, out), 2, "mixed.tif", "page 1", "one shape")
    no_output(out)


def _image_folder(tmp_path, n=4):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(patterns((n, 24, 24))):
        tifffile.imwrite(folder / f"p{i + 1}.tif", image)
    return folder


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_truncated_image_in_a_folder_is_named(cli, sched, tmp_path, kind):
    import imageio.v3 as iio

    folder = _image_folder(tmp_path)
    whole = tmp_path / f"whole.{kind}"
    iio.imwrite(whole, patterns((24, 24))) if kind == "png" else tifffile.imwrite(whole, patterns((24, 24)))
    _cut(whole, folder / f"p3.{kind}", whole.stat().st_size // 2)
    before = digest(folder)
    out = tmp_path / "o.zarr"
    refused(cli("ingest", folder, out, *sched), 2, f"p3.{kind}")
    no_output(out)
    assert digest(folder) == before


def test_symlink_loop_in_an_image_folder_is_named(cli, tmp_path):
    folder = _image_folder(tmp_path)
    (folder / "p5.tif").symlink_to(folder / "p5.tif")
    out = tmp_path / "o.zarr"
    refused(cli("ingest", folder, out), 2, "p5.tif")
    no_output(out)


@pytest.mark.skipif(not can_drop_permissions(), reason="cannot drop file permissions here")
def test_unreadable_image_in_a_folder_is_named(tmp_path):
    folder = _image_folder(tmp_path)
    (folder / "p3.tif").chmod(0)  # read by a worker process, not the first image
    out = tmp_path / "o.zarr"
    done = subprocess.run(KDECONV + ["ingest", str(folder), str(out), "--workers", "1"],
                          capture_output=True, text=True, env=subprocess_env(),
                          preexec_fn=drop_file_permissions, timeout=120)
    refused(done, 2, "p3.tif", "ermission denied")
    no_output(out)


# ------------------------------------------------------------------ outputs against inputs (5)

def test_output_that_is_the_input_is_refused_and_the_input_kept(cli, tmp_path):
    vendor = tmp_path / "x.up2"
    shutil.copy(EDAX / "edax_binary.up2", vendor)
    before = digest(vendor)
    refused(cli("ingest", vendor, vendor, "--overwrite"), 2, "is the input")
    assert digest(vendor) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.up2"]


def test_output_inside_or_around_the_input_is_refused(cli, map_store, tmp_path):
    before = digest(map_store)
    inside = map_store / "separated.zarr"
    refused(cli("separate", map_store, "--out", inside), 2, "inside the input")
    folder = tmp_path / "scan"
    folder.mkdir()
    vendor = folder / "x.up2"
    shutil.copy(EDAX / "edax_binary.up2", vendor)
    refused(cli("ingest", vendor, folder, "--overwrite"), 2, "contain the input")
    assert vendor.exists() and digest(map_store) == before
    link = tmp_path / "link.zarr"
    link.symlink_to(map_store)
    refused(cli("separate", link, "--out", map_store, "--overwrite"), 2, "is the input")
    refused(cli("export", link, map_store / "patterns.tif"), 2, "inside the input")
    assert digest(map_store) == before


# ------------------------------------------------------------------ options and configs (12)

@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_chunk_mb_must_be_a_positive_number(cli, tmp_path, value):
    out = tmp_path / "o.zarr"
    refused(cli("ingest", EDAX / "edax_binary.up2", out, "--chunk-mb", value), 2, "--chunk-mb")
    no_output(out)


def test_a_bad_option_blames_the_option_not_the_config(cli, tmp_path):
    config = tmp_path / "gen.yaml"
    config.write_text("n: 10\nsource: {kind: simulate, n_pure: 4, shape: [32, 32]}\n")
    out = tmp_path / "pairs.zarr"
    line = refused(cli("generate", "--config", config, "--out", out, "--n", "-5"), 2, "--n -5")
    assert str(config) not in line
    no_output(out)


def test_yaml_syntax_error_gives_its_line(cli, tmp_path):
    config = tmp_path / "gen.yaml"
    config.write_text("seed: 1\nn: 10\nsource:\n  kind: simulate\n   shape: [32, 32]\n")
    out = tmp_path / "pairs.zarr"
    refused(cli("generate", "--config", config, "--out", out), 2, "not valid YAML", "line 5")
    no_output(out)
