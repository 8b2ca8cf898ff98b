"""The residual pass: B separated again from what A leaves of C."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from kdeconv.model import load_separator
from kdeconv.model.inputs import DEFAULT_NORMALIZATION
from kdeconv.model.residual_pass import A_AGAIN_FROM, REPLACE_FROM, fit_residual, residual_pass
from kdeconv.preprocess import circular_mask
from kdeconv.preprocess import torch_kernels as tk

SHAPE = (48, 48)
SPEC = dict(DEFAULT_NORMALIZATION)  # the shipped recipe: percentile stretch, masks detected


def _smooth_fields(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fields = np.stack([gaussian_filter(rng.normal(size=SHAPE), 3.0) for _ in range(n)])
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    return (fields / fields.std(axis=(1, 2), keepdims=True)).astype(np.float32)


def _corr(x, y) -> float:
    x, y = (np.ravel(np.asarray(v, np.float64)) for v in (x, y))
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / np.sqrt((x @ x) * (y @ y)))


def _identity_network(x: torch.Tensor) -> torch.Tensor:
    """A stand-in network that calls its whole input the dominant pattern."""
    return x


def _stretch(p):
    return (p - p.min()) / (p.max() - p.min())


def _case(seed: int = 0):
    """C = 0.6 A + 0.4 B, where the first pass got A right and only half of B (B1 of B1 + B2)."""
    a, b1, b2 = _smooth_fields(3, seed)
    b = b1 + b2
    c = 0.6 * a + 0.4 * b
    return (torch.from_numpy(_stretch(c))[None], torch.from_numpy(_stretch(a))[None],
            torch.from_numpy(_stretch(b1))[None], b)


def test_residual_recovers_what_the_first_b_missed():
    c, a, b_first, b_true = _case()
    assert _corr(b_first, b_true) < 0.8
    w_a = torch.tensor([0.6])
    a_out, b_out, w_out = residual_pass(_identity_network, c, a, b_first, w_a, 0.3, SPEC)
    assert _corr(b_out, b_true) > 0.99
    assert _corr(a_out, a) > 0.99 and torch.equal(w_out, w_a)  # A was right: it stays A
    assert float(b_out.min()) >= 0.0 and float(b_out.max()) <= 1.0


def test_near_equal_mixtures_separate_a_again():
    """From A_AGAIN_FROM up, A is made again by the network from what the new B leaves
    (C - beta*B - gamma); below it A is kept bit for bit. The weights stay."""
    c, a, b_first, _ = _case()
    c2, a2, b2 = (torch.cat([t, t]) for t in (c, a, b_first))
    w_a = torch.tensor([1.0 - (A_AGAIN_FROM - 0.01), 0.6])
    a_out, b_out, w_out = residual_pass(_identity_network, c2, a2, b2, w_a, 0.2, SPEC)
    assert torch.equal(a_out[0], a[0])
    unmasked = torch.zeros(1, dtype=torch.bool)
    want = tk.prepare_inputs(fit_residual(c, b_out[1:], a), SPEC, unmasked)[0]
    torch.testing.assert_close(a_out[1:], want)
    assert not torch.equal(a_out[1], a[0])
    assert torch.equal(w_out, w_a)


def test_faint_minorities_average_the_two_bs():
    """Between the bar and REPLACE_FROM the second B is averaged with the first."""
    c, a, b_first, _ = _case()
    w_a = torch.tensor([1.0 - (0.2 + REPLACE_FROM) / 2])
    _, replaced, _ = residual_pass(_identity_network, c, a, b_first, torch.tensor([0.6]), 0.2, SPEC)
    _, averaged, _ = residual_pass(_identity_network, c, a, b_first, w_a, 0.2, SPEC)
    np.testing.assert_allclose(averaged.numpy(), (0.5 * (replaced + b_first)).numpy(), atol=1e-6)
    # a bar above REPLACE_FROM replaces from the bar itself
    _, above, _ = residual_pass(_identity_network, c, a, b_first, torch.tensor([0.6]), 0.35, SPEC)
    assert torch.equal(above, replaced)


def test_fit_residual_of_an_exact_mixture_is_the_scaled_minority():
    a, b = (torch.from_numpy(f)[None] for f in _smooth_fields(2, 1))
    residual = fit_residual(0.7 * a + 0.3 * b + 2.0, a, b)
    np.testing.assert_allclose(residual.numpy(), (0.3 * b).numpy(), atol=1e-4)


def test_below_the_bar_and_order():
    """Patterns whose minority is under the bar keep their B; A comes out dominant either way."""
    c, a, b_first, _ = _case()
    c2, a2, b2 = (torch.cat([t, t]) for t in (c, a, b_first))
    w_a = torch.tensor([0.9, 0.25])  # minority 0.1 (kept), and A, B given the wrong way round
    a_out, b_out, w_out = residual_pass(_identity_network, c2, a2, b2, w_a, 0.2, SPEC)
    assert torch.equal(b_out[0], b_first[0])
    assert torch.equal(a_out[1], b_first[0])          # the heavier one (0.75) is now A
    np.testing.assert_allclose(w_out.numpy(), [0.9, 0.75])
    assert not torch.equal(b_out[1], a[0])             # the minority was separated again


def test_masked_patterns_stay_masked():
    c, a, b_first, _ = _case()
    circle = torch.from_numpy(circular_mask(SHAPE))
    c, a, b_first = (t * circle for t in (c, a, b_first))
    a_out, b_out, _ = residual_pass(_identity_network, c, a, b_first, torch.tensor([0.55]), 0.3, SPEC)
    for out in (a_out, b_out):  # both separated again (minority 0.45)
        assert float(out[0][~circle].abs().max()) == 0.0
        assert float(out[0][circle].max()) == pytest.approx(1.0)


def test_separator_changes_only_the_minority_above_the_bar():
    separator = load_separator(None, device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    patterns = np.stack([gaussian_filter(rng.random((96, 96)), 1.5) for _ in range(6)]).astype(np.float32)
    one = separator.separate(patterns)
    again = separator.separate(patterns, residual_pass=0.0)
    never = separator.separate(patterns, residual_pass=0.5 + 1e-6)
    clear = one[2][:, 1] < A_AGAIN_FROM  # A separated again only where the two are near equal
    np.testing.assert_array_equal(one[0][clear], again[0][clear])
    np.testing.assert_array_equal(one[2], again[2])
    assert not np.array_equal(one[1], again[1])
    for x, y in zip(one, never):
        np.testing.assert_array_equal(x, y)
