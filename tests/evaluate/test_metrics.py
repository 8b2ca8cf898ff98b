import numpy as np
import pytest

from kdeconv.evaluate.metrics import best_ordering, minmax01, ncc, pair_metrics, psnr, ssim, weight_error


def _patterns(n=3, shape=(16, 16), seed=0):
    return np.random.default_rng(seed).random((n,) + shape)


def test_ncc_known_answers():
    t = _patterns()
    assert np.allclose(ncc(t, t), 1.0)
    assert np.allclose(ncc(3.0 * t + 7.0, t), 1.0)  # scale and offset do not matter
    assert np.allclose(ncc(-t, t), -1.0)
    assert np.allclose(ncc(np.zeros_like(t), t), 0.0)  # flat prediction: 0, no NaN


def test_psnr_known_value_and_identity():
    t = np.array([[[0.0, 1.0], [0.0, 1.0]]])
    p = np.array([[[0.0, 1.0], [0.5, 1.0]]])
    # both already span [0, 1]; MSE = 0.25 / 4 -> 10 log10(16) dB
    assert psnr(p, t)[0] == pytest.approx(10 * np.log10(16.0))
    assert psnr(t, t, cap_db=80.0)[0] == 80.0


def test_ssim_identity_and_inverse():
    t = _patterns()
    assert np.allclose(ssim(t, t), 1.0)
    assert (ssim(1.0 - t, t) < 0).all()
    assert (ssim(np.zeros_like(t), t) < 0.05).all()


def test_minmax01_respects_mask_and_flat():
    x = np.arange(16.0).reshape(1, 4, 4)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True  # values 5, 6, 9, 10
    out = minmax01(x, mask)
    assert out[0, 1, 1] == 0.0 and out[0, 2, 2] == 1.0 and out[0, 0, 0] == 0.0
    assert not minmax01(np.ones((1, 4, 4))).any()


def test_swapped_predictions_score_the_same():
    a, b = _patterns(seed=1), _patterns(seed=2)
    w = np.array([[0.7, 0.3], [0.6, 0.4], [0.55, 0.45]])
    straight = pair_metrics(a, b, a, b)
    swapped = pair_metrics(b, a, a, b)
    assert not straight["swapped"].any() and swapped["swapped"].all()
    for key in ("ncc_a", "ncc_b", "psnr_a", "psnr_b", "ssim_a", "ssim_b"):
        assert np.allclose(straight[key], swapped[key])
    assert np.allclose(weight_error(w[:, ::-1], w, swapped["swapped"]), 0.0)
    assert np.allclose(weight_error(w, w), 0.0)
    assert np.allclose(weight_error(w[:, ::-1], w), np.abs(w[:, 1] - w[:, 0]))


def test_best_ordering_per_pattern():
    a, b = _patterns(seed=3), _patterns(seed=4)
    pred_a = np.stack([a[0], b[1], a[2]])
    pred_b = np.stack([b[0], a[1], b[2]])
    assert best_ordering(pred_a, pred_b, a, b).tolist() == [False, True, False]
