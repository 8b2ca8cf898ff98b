"""Permutation-invariant loss: picks the right ordering, weight target follows it."""

import torch

from kdeconv.train.loss import mixture_residual, ncc, order_by_truth, pit_loss


def _pair(seed=0, n=4, size=16):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, size, size, generator=g)
    b = torch.rand(n, 1, size, size, generator=g)
    w = torch.rand(n, generator=g) * 0.5 + 0.5
    return a, b, w


def test_swapped_targets_give_equal_loss():
    a, b, w = _pair()
    pa, pb = a + 0.05 * torch.randn_like(a), b + 0.05 * torch.randn_like(b)
    pw = w + 0.01
    kw = dict(pattern_l1=1.0, pattern_grad=0.5, weight_l1=1.0)
    loss, parts = pit_loss(pa, pb, pw, a, b, w, **kw)
    loss_swapped, parts_swapped = pit_loss(pa, pb, pw, b, a, 1 - w, **kw)
    torch.testing.assert_close(loss, loss_swapped)
    assert not parts["swapped"].any()
    assert parts_swapped["swapped"].all()


def test_perfect_prediction_in_either_order_is_zero_loss():
    a, b, w = _pair(1)
    loss_direct, _ = pit_loss(a, b, w, a, b, w)
    loss_crossed, parts = pit_loss(b, a, 1 - w, a, b, w)  # decoder A predicted B, weight follows
    assert float(loss_direct) == 0.0
    assert float(loss_crossed) == 0.0
    assert parts["swapped"].all()


def test_weight_target_follows_chosen_ordering():
    a, b, w = _pair(2)
    w = 0.5 + (w - 0.5) / 2  # in [0.5, 0.75]: the pattern gap (~2/3) decides the ordering
    # Patterns swapped, but weight NOT swapped: the weight error must count (|w - (1-w)|).
    loss, parts = pit_loss(b, a, w, a, b, w, pattern_l1=1.0, pattern_grad=0.0, weight_l1=1.0)
    torch.testing.assert_close(parts["weight_mae"], (2 * w - 1).abs().mean())
    torch.testing.assert_close(loss, (2 * w - 1).abs().mean())


def test_mixture_residual_is_zero_for_affine_remix():
    a, b, w = _pair(3)
    ww = w.view(-1, 1, 1, 1)
    c = 3.0 * (ww * a + (1 - ww) * b) + 0.2  # gain and offset, as after per-pattern normalisation
    torch.testing.assert_close(mixture_residual(a, b, w, c), torch.zeros(len(a)), atol=1e-5, rtol=0)
    assert (mixture_residual(a, b, 1 - w, c) > 1e-3).all()


def test_order_by_truth_and_ncc():
    a, b, _ = _pair(4)
    oa, ob, swap = order_by_truth(b, a, a, b)
    assert swap.all()
    torch.testing.assert_close(oa, a)
    torch.testing.assert_close(ncc(a, 2 * a + 1), torch.ones(len(a)))


def test_alike_outputs_follow_the_weight_head():
    # Early training: both decoders give the same image; the ordering must follow the weight
    # head's guess (decoder A = the constituent it calls heavier), not a coin flip.
    a, b, w = _pair(5)
    same = (a + b) / 2
    _, parts = pit_loss(same, same, torch.full_like(w, 0.7), a, b, w)
    assert not parts["swapped"].any()
    _, parts = pit_loss(same, same, torch.full_like(w, 0.3), a, b, w)
    assert parts["swapped"].all()


def test_ncc_term_ignores_gain_and_offset_and_keeps_pit():
    from kdeconv.train.loss import per_sample_ncc_loss

    a, b, w = _pair(5)
    assert float(per_sample_ncc_loss(0.3 * a + 0.2, a).abs().max()) < 1e-5
    assert float(per_sample_ncc_loss(1 - a, a).min()) > 1.9  # anti-correlated: 1 - (-1)
    kw = dict(pattern_l1=0.0, pattern_grad=0.0, pattern_ncc=1.0, weight_l1=0.0)
    loss, parts = pit_loss(0.5 * b + 0.1, 2 * a, w, a, b, w, **kw)  # right patterns, swapped
    assert float(loss) < 1e-5 and parts["swapped"].all()
