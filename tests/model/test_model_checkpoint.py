"""Checkpoints round-trip exactly; bad ones are one-line InputErrors; Separator contract."""

import numpy as np
import pytest
import torch

from kdeconv.errors import InputError
from kdeconv.model import (
    DualDecoderUNet,
    UNetConfig,
    file_sha256,
    load_separator,
    read_checkpoint,
    save_checkpoint,
    set_claim_rule,
)

SMALL = UNetConfig(widths=(8, 16, 24), head_channels=2, weight_hidden=8)


@pytest.fixture
def small_ckpt(tmp_path):
    torch.manual_seed(1)
    model = DualDecoderUNet(SMALL)
    # Non-trivial BatchNorm statistics so a round trip that dropped buffers would show.
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 1, 40, 40))
    path = save_checkpoint(tmp_path / "m.pt", model, metrics={"val_loss": 0.5})
    return path, model


def test_round_trip_identical_outputs(small_ckpt):
    path, model = small_ckpt
    x = np.random.default_rng(0).poisson(300, (5, 45, 50)).astype(np.float32)
    s1 = load_separator(path, device="cpu")
    s2 = load_separator(path, device="cpu")
    a1, b1, w1 = s1.separate(x)
    a2, b2, w2 = s2.separate(x, batch_size=2)  # batching must not change results
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_allclose(a1, a2, atol=1e-6)
    np.testing.assert_allclose(b1, b2, atol=1e-6)
    assert s1.sha256 == s2.sha256 and len(s1.sha256) == 64
    assert s1.meta["metrics"]["val_loss"] == 0.5
    assert s1.meta["model_config"]["widths"] == [8, 16, 24]
    assert str(s1.device) == "cpu"


def test_separate_contract(small_ckpt):
    path, _ = small_ckpt
    sep = load_separator(path, device="cpu")
    x = np.random.default_rng(1).random((7, 33, 41)).astype(np.float32) * 1000
    a, b, w = sep.separate(x)
    assert a.shape == b.shape == x.shape and w.shape == (7, 2)
    assert a.dtype == b.dtype == w.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1 and b.min() >= 0 and b.max() <= 1
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert (w[:, 0] >= w[:, 1]).all()  # A is dominant
    empty = sep.separate(np.zeros((0, 33, 41), np.float32))
    assert empty[0].shape == (0, 33, 41) and empty[2].shape == (0, 2)


def test_masked_patterns_stay_masked(small_ckpt):
    from kdeconv.preprocess import circular_mask

    path, _ = small_ckpt
    mask = circular_mask((40, 40))
    x = (np.random.default_rng(2).random((3, 40, 40)) * 500 + 100).astype(np.float32) * mask
    a, b, _ = load_separator(path, device="cpu").separate(x)
    assert not a[:, ~mask].any() and not b[:, ~mask].any()


def test_default_model_loads():
    sep = load_separator(None, device="cpu")
    a, b, w = sep.separate(np.random.default_rng(3).random((2, 60, 60)).astype(np.float32))
    assert a.shape == (2, 60, 60) and w.shape == (2, 2)


def test_shipped_adapt_base_loads_with_its_record():
    import json

    from kdeconv.model import ADAPT_BASE_CHECKPOINT, DEFAULT_CHECKPOINT

    base, default = load_separator(ADAPT_BASE_CHECKPOINT, device="cpu"), load_separator(None, device="cpu")
    record = json.loads(ADAPT_BASE_CHECKPOINT.with_suffix(".json").read_text())
    assert record["sha256"] == base.sha256 != default.sha256
    assert record["name"] and base.meta["model_config"] == default.meta["model_config"]
    assert ADAPT_BASE_CHECKPOINT.stat().st_size < 20e6 and DEFAULT_CHECKPOINT.stat().st_size < 20e6


@pytest.mark.parametrize("name", ["BROAD_LOOKS_CHECKPOINT", "SMALL_PATTERNS_CHECKPOINT"])
def test_each_shipped_model_loads_with_its_record_and_the_recipe_that_made_it(name):
    import json

    import kdeconv.model as model

    path = getattr(model, name)
    shipped = load_separator(path, device="cpu")
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == shipped.sha256 != load_separator(None, device="cpu").sha256
    assert record["name"] and "workflows/" in record["command"] and path.stat().st_size < 20e6
    assert shipped.claim_rule["claim_weight"] > 0  # the gate's claim rule travels with it


def test_claim_rule_is_stored_without_touching_the_weights(small_ckpt, tmp_path):
    path, _ = small_ckpt
    assert load_separator(path, device="cpu").claim_rule is None
    ruled = set_claim_rule(path, tmp_path / "ruled.pt", 0.04, 0.25)
    x = np.random.default_rng(4).random((3, 40, 40)).astype(np.float32)
    before, after = load_separator(path, device="cpu"), load_separator(ruled, device="cpu")
    assert after.claim_rule == {"claim_weight": 0.04, "claim_min_cm": 0.25}
    for p, q in zip(before.separate(x), after.separate(x)):
        np.testing.assert_array_equal(p, q)
    old, new = read_checkpoint(path), read_checkpoint(ruled)
    assert new.keys() - old.keys() == {"claim_rule"}
    assert file_sha256(path) != file_sha256(ruled)  # the source is left alone


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "foreign", "mismatch",
                                    "future", "claim_rule"])
def test_bad_checkpoint_is_input_error(small_ckpt, tmp_path, damage):
    path, model = small_ckpt
    bad = tmp_path / "bad.pt"
    if damage == "truncated":
        bad.write_bytes(path.read_bytes()[:2000])
    elif damage == "garbage":
        bad.write_bytes(b"not a checkpoint at all\n" * 10)
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, bad)
    elif damage == "mismatch":
        ckpt = read_checkpoint(path)
        ckpt["model_config"]["widths"] = [8, 16, 32]  # weights no longer fit
        torch.save(ckpt, bad)
    elif damage == "future":
        ckpt = read_checkpoint(path)
        ckpt["format_version"] = 99
        torch.save(ckpt, bad)
    elif damage == "claim_rule":
        ckpt = read_checkpoint(path)
        ckpt["claim_rule"] = {"claim_weight": 0.9, "claim_min_cm": 0.3}  # above 0.5: never a minority
        torch.save(ckpt, bad)
    with pytest.raises(InputError) as info:
        load_separator(bad, device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg


def test_cuda_without_cuda_is_input_error(small_ckpt):
    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    with pytest.raises(InputError, match="CUDA"):
        load_separator(small_ckpt[0], device="cuda")
