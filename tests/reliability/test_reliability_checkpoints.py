"""Checkpoints that would invent output (NaN weights of a diverged run) or are not checkpoints
are refused before any work, with a message cut at a word at most."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from reliability_data import digest, no_output, refused

from kdeconv.errors import InputError
from kdeconv.model.checkpoint import DEFAULT_CHECKPOINT


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory):
    """The shipped model with one layer of NaN weights, as a diverged training run leaves it."""
    ckpt = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    path = tmp_path_factory.mktemp("ckpt") / "diverged.pt"
    torch.save(ckpt, path)
    return path, name


def test_nan_weights_are_refused_and_nothing_is_written(cli, sched, map_store, nan_checkpoint, tmp_path):
    path, layer = nan_checkpoint
    before = digest(map_store)
    out = tmp_path / "sep.zarr"
    refused(cli("separate", map_store, "--out", out, "--checkpoint", path, *sched), 2,
            "NaN or inf weights", layer, "diverged")
    no_output(out)
    assert digest(map_store) == before


def test_random_bytes_are_not_a_checkpoint(cli, map_store, tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    out = tmp_path / "sep.zarr"
    refused(cli("separate", map_store, "--out", out, "--checkpoint", path), 2,
            "random.pt is not a kdeconv checkpoint")
    no_output(out)


def test_truncated_checkpoint_is_said_so(cli, map_store, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:300_000])
    out = tmp_path / "sep.zarr"
    line = refused(cli("separate", map_store, "--out", out, "--checkpoint", path), 2, "truncated")
    assert line.endswith(")")
    no_output(out)


def test_a_long_reason_is_cut_at_a_word(cli, map_store, tmp_path):
    # A zip whose pickle is garbage: torch's message is long; the line keeps whole words.
    path = tmp_path / "garbage.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("garbage/data.pkl", b"\x80\x02garbage that is no pickle at all" * 3)
        archive.writestr("garbage/version", b"3\n")
    with pytest.raises(Exception) as raised:
        torch.load(path, map_location="cpu", weights_only=True)
    full = " ".join(str(raised.value).split())
    line = refused(cli("separate", map_store, "--out", tmp_path / "sep.zarr", "--checkpoint", path), 2)
    reason = line[line.index("(") + 1: -1]
    if reason.endswith(" ..."):
        kept = reason[: -len(" ...")]
        assert full.startswith(kept) and full[len(kept)] == " ", (kept, full)
    else:
        assert reason in full


def test_a_model_that_returns_nan_is_refused_on_its_trial_batch(map_store, tmp_path, monkeypatch):
    import kdeconv.model
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.separate.driver import separate_map

    class Diverged:
        sha256 = "d" * 64

        def separate(self, patterns):
            nan = np.full(patterns.shape, np.nan, np.float32)
            return nan, nan, np.full((len(patterns), 2), np.nan, np.float32)

    monkeypatch.setattr(kdeconv.model, "load_separator", lambda checkpoint, device="cpu": Diverged())
    out = tmp_path / "sep.zarr"
    with pytest.raises(InputError, match="NaN or inf"):
        separate_map(map_store, out, SeparateConfig())
    no_output(out)


def test_the_kernel_refuses_non_finite_model_output():
    from kdeconv.separate.chunk import separate_patterns

    class Overflow:
        def separate(self, batch):
            a = np.asarray(batch, np.float32).copy()
            a[-1, 0, 0] = np.inf
            return a, a, np.tile([[0.6, 0.4]], (len(batch), 1)).astype(np.float32)

    block = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    with pytest.raises(InputError, match="NaN or inf"):
        separate_patterns(block, Overflow(), batch_size=2, background={"static": "none"})
