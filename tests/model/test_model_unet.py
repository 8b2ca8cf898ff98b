"""The dual-decoder U-Net: any input size in, same size out; weights in [0, 1]."""

import pytest
import torch

from kdeconv.model import DualDecoderUNet, UNetConfig
from kdeconv.model.unet import GlobalBlock


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


class _FixedLogits(torch.nn.Module):
    """A weight head that reads a preset logit per pattern, whatever the features."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)[:, None]

    def forward(self, pooled):
        return pooled[:, :1] * 0 + self.logits


@pytest.mark.parametrize("logits", [[2.0, -1.0, 0.5, -3.0], [1.0, 2.0, 3.0, 0.1], [-1.0, -2.0, -0.5, -4.0]])
def test_forward_dominant_is_forwards_heavier_output(logits):
    """Each pattern through its own dominant decoder gives what the full forward gives."""
    torch.manual_seed(1)
    net = DualDecoderUNet(UNetConfig()).eval()
    net.weight_head = _FixedLogits(logits)
    x = torch.rand(4, 1, 61, 75)
    with torch.inference_mode():
        a, b, w_a = net(x)
        dominant, w_dominant = net.forward_dominant(x)
    heavier = torch.where((w_a >= 0.5)[:, None, None, None], a, b)
    assert dominant.shape == (4, 1, 61, 75)
    torch.testing.assert_close(dominant, heavier, rtol=0, atol=1e-5)
    torch.testing.assert_close(w_dominant, torch.maximum(w_a, 1 - w_a))


def test_multiple_follows_config():
    cfg = UNetConfig(stem_factor=2, widths=(8, 16, 24))
    assert cfg.multiple == 8
    m = DualDecoderUNet(cfg).eval()
    with torch.inference_mode():
        a, b, w = m(torch.rand(1, 1, 30, 42))
    assert a.shape == (1, 1, 30, 42)


@pytest.mark.parametrize("shape", [(60, 80), (128, 156), (7, 9)])
def test_global_attention_levels_any_size(shape):
    torch.manual_seed(0)
    m = DualDecoderUNet(UNetConfig(global_levels=(2, 3))).eval()
    with torch.inference_mode():
        a, b, w = m(torch.rand(2, 1, *shape))
    assert a.shape == b.shape == (2, 1, *shape) and w.shape == (2,)
    assert sum(isinstance(mod, GlobalBlock) for mod in m.modules()) == 2


def test_global_block_sees_the_whole_map():
    # One changed position changes the output everywhere: the receptive field is global.
    torch.manual_seed(0)
    block = GlobalBlock(8, 2).double().eval()
    x = torch.rand(1, 8, 6, 6, dtype=torch.float64)
    y = x.clone()
    y[0, :, 0, 0] = torch.rand(8, dtype=torch.float64)  # not a constant shift: LayerNorm drops that
    with torch.inference_mode():
        diff = (block(x) - block(y)).abs()[0].sum(0)
    assert bool((diff[1:, 1:] > 1e-9).all())


@pytest.mark.parametrize("shape", [(60, 80), (7, 9)])
def test_full_resolution_head_any_size(shape):
    torch.manual_seed(0)
    m = DualDecoderUNet(UNetConfig(full_res_channels=4, refine_layers=3)).eval()
    assert m.dec_a.to_full[0].out_channels == 4 * 4 * 4 and len(m.dec_a.refine_more) == 2
    with torch.inference_mode():
        a, b, w = m(torch.rand(2, 1, *shape))
    assert a.shape == b.shape == (2, 1, *shape) and w.shape == (2,)


def test_default_head_keeps_the_checkpoint_layout():
    # Defaults of the new head options build exactly the head that checkpoints written before them
    # hold (the ni-v2 model): a 1x1 conv to s*s channels, PixelShuffle, one 3x3 conv on
    # (coarse output, input), then a 1x1 readout; no extra refine convs.
    model = DualDecoderUNet(UNetConfig(widths=[8, 16], stem_factor=4, head_channels=4))
    head = {k: tuple(v.shape) for k, v in model.state_dict().items()
            if k.startswith("dec_a.") and k.split(".")[1] in ("to_full", "refine", "refine_more", "out")}
    assert head == {"dec_a.to_full.0.weight": (16, 8, 1, 1), "dec_a.to_full.0.bias": (16,),
                    "dec_a.refine.weight": (4, 2, 3, 3), "dec_a.refine.bias": (4,),
                    "dec_a.out.weight": (1, 4, 1, 1), "dec_a.out.bias": (1,)}
