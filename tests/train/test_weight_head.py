"""Refitting the weight head: a known answer on synthetic features, A and B untouched, and the
refitted model file written whole or refused."""

import numpy as np
import pytest
import torch

from kdeconv.errors import InputError
from kdeconv.model import DualDecoderUNet, UNetConfig, load_separator, read_checkpoint, save_checkpoint
from kdeconv.model.checkpoint import update_checkpoint
from kdeconv.train.weight_head import (
    balanced_weights,
    calibration_by_bin,
    fit_weight_head,
    pooled_features,
    with_weight_head,
)

SMALL = UNetConfig(widths=(8, 16, 24), head_channels=2, weight_hidden=8)


def _synthetic(n_maps=12, per_map=200, seed=0):
    """Features that carry the minority linearly in 2 of 16 columns (the rest is noise)."""
    rng = np.random.default_rng(seed)
    n = n_maps * per_map
    minority = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.05, 0.5, n)).astype(np.float32)
    features = rng.normal(0, 0.1, (n, 16)).astype(np.float32)
    features[:, 3] = 4 * minority + rng.normal(0, 0.02, n)
    features[:, 7] = -2 * minority + rng.normal(0, 0.02, n)
    return features, minority, np.repeat(np.arange(n_maps), per_map)


def test_fit_recovers_a_known_minority_per_bin():
    features, minority, groups = _synthetic()
    state, record = fit_weight_head(features, minority, hidden=8, groups=groups, epochs=50, lr=1e-2,
                                    batch_size=64, seed=0, balance=False)
    head = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1))
    head.load_state_dict(state)
    with torch.no_grad():
        w_a = torch.sigmoid(head(torch.from_numpy(features))[:, 0]).numpy()
    held_out = np.isin(groups, [int(g) for g in record["groups_val"]])
    assert 0 < held_out.sum() < len(groups)  # whole maps are held out
    by_bin = calibration_by_bin(minority[held_out], 1 - w_a[held_out])
    assert set(by_bin) == {"pure", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5"}
    for name, cell in by_bin.items():
        assert abs(cell["predicted"] - cell["true"]) < 0.03, (name, cell)
    assert record["val_mae"] < 0.03


def test_balanced_weights_give_every_minority_bin_the_same_total():
    minority = np.array([0.0] * 6 + [0.12, 0.14, 0.18] + [0.3] + [0.45, 0.47])
    weights = balanced_weights(minority)
    assert weights.mean() == pytest.approx(1.0)
    totals = [weights[minority == 0].sum(), weights[(minority > 0.05) & (minority < 0.15)].sum(),
              weights[(minority >= 0.15) & (minority < 0.25)].sum(), weights[minority == 0.3].sum(),
              weights[minority >= 0.45].sum()]
    # bins: pure, 0.05-0.15 (2 rows), 0.15-0.25 (1), 0.25-0.35 (1), 0.45+ (2)
    np.testing.assert_allclose(totals, totals[0], rtol=1e-6)


def test_fit_refuses_rows_that_do_not_line_up():
    features, minority, groups = _synthetic(n_maps=2, per_map=10)
    with pytest.raises(ValueError, match="one row per pattern"):
        fit_weight_head(features, minority[:-1], hidden=8, groups=groups, epochs=1)


def test_calibration_bins_hold_the_true_and_predicted_medians():
    truth = np.array([0, 0, 0.12, 0.18, 0.25, 0.45])
    read = np.array([0.01, 0.03, 0.10, 0.14, 0.22, 0.40])
    bins = calibration_by_bin(truth, read)
    assert bins["pure"] == {"true": 0.0, "predicted": pytest.approx(0.02), "n": 2}
    assert bins["0.1-0.2"]["true"] == pytest.approx(0.15)
    assert bins["0.1-0.2"]["predicted"] == pytest.approx(0.12)
    assert "0.3-0.4" not in bins  # empty bins are left out, not reported as NaN


@pytest.fixture
def small_model_file(tmp_path):
    torch.manual_seed(3)
    model = DualDecoderUNet(SMALL).eval()
    return save_checkpoint(tmp_path / "m.pt", model), model


def test_a_refitted_head_changes_the_weights_only(small_model_file, tmp_path):
    path, model = small_model_file
    x = np.random.default_rng(1).random((6, 40, 40)).astype(np.float32)
    features, w_a = pooled_features(model, x, batch_size=4)
    assert features.shape == (6, 2 * SMALL.widths[-1]) and features.dtype == np.float32
    with torch.no_grad():
        _, _, w_forward = model(torch.from_numpy(x)[:, None])
    np.testing.assert_allclose(w_a, w_forward.numpy(), atol=1e-6)  # what the head reads, exactly

    head_state = {k: torch.zeros_like(v) for k, v in model.weight_head.state_dict().items()}
    head_state["2.bias"] = torch.tensor([2.0])  # a constant head: wA = sigmoid(2)
    ckpt = read_checkpoint(path)
    out = update_checkpoint(path, tmp_path / "refit.pt",
                            state_dict=with_weight_head(ckpt["state_dict"], head_state),
                            weight_head_refit={"maps": 0})
    # fp32: the known answer is sigmoid(2) to 1e-6, which bf16 (auto on CPUs that have it) rounds
    before, after = (load_separator(p, device="cpu", precision="fp32") for p in (path, out))
    a0, b0, w0 = before.separate(x)
    a1, b1, w1 = after.separate(x)
    np.testing.assert_array_equal(a0, a1)
    np.testing.assert_array_equal(b0, b1)
    np.testing.assert_allclose(w1[:, 0], 1 / (1 + np.exp(-2.0)), atol=1e-6)
    assert read_checkpoint(out)["weight_head_refit"] == {"maps": 0}


def test_a_head_of_another_shape_is_refused_before_writing(small_model_file, tmp_path):
    path, model = small_model_file
    ckpt = read_checkpoint(path)
    wrong = {k: torch.zeros(3, 3) for k in model.weight_head.state_dict()}
    with pytest.raises(ValueError, match="does not fit"):
        with_weight_head(ckpt["state_dict"], wrong)
    bad = dict(ckpt["state_dict"])
    bad["weight_head.2.bias"] = torch.tensor([float("nan")])
    with pytest.raises(InputError, match="NaN"):
        update_checkpoint(path, tmp_path / "nan.pt", state_dict=bad)
    assert not (tmp_path / "nan.pt").exists()
