"""Dual-decoder U-Net: one shared encoder, decoders for A and B, and a weight head.

Sized for CPU throughput: the stem is a lossless space-to-depth (PixelUnshuffle) so no wide conv
ever runs at full resolution; each decoder ends with the inverse PixelShuffle and one thin
full-resolution conv that also sees the input. Skips are taken before each downsampling.
Any input size works: ``forward`` reflect-pads to a multiple of ``cfg.multiple`` and crops back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdeconv.config.model import UNetConfig

__all__ = ["UNetConfig", "DualDecoderUNet", "ResBlock", "GlobalBlock"]


class ResBlock(nn.Module):
    """conv-BN-SiLU-conv-BN plus a (1x1 when widths differ) skip, then SiLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Identity() if cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        y = F.silu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.silu(y + self.skip(x))


class GlobalBlock(nn.Module):
    """Pre-norm transformer block over all positions of a feature map, with a position term.

    Positions enter as a 1x1 conv of normalised coordinates (y, x in [-1, 1] and a few
    sinusoids), so the block works at any input size.
    """

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.pos = nn.Conv2d(8, channels, 1)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.SiLU(),
                                 nn.Linear(2 * channels, channels))

    @staticmethod
    def coordinates(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        y = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype).view(h, 1).expand(h, w)
        x = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype).view(1, w).expand(h, w)
        py, px = torch.pi * y, torch.pi * x
        # the order is part of the trained weights (self.pos)
        feats = [y, x, torch.sin(py), torch.sin(px), torch.sin(2 * py), torch.sin(2 * px),
                 torch.cos(py), torch.cos(px)]
        return torch.stack(feats)[None]

    def forward(self, x):
        n, c, h, w = x.shape
        x = x + self.pos(self.coordinates(h, w, x))
        t = x.flatten(2).transpose(1, 2)  # (n, h*w, c)
        q = self.norm1(t)
        t = t + self.attn(q, q, q, need_weights=False)[0]
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(n, c, h, w)


def _stage(cin: int, cout: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(cin if i == 0 else cout, cout) for i in range(max(1, n))])


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.SiLU())


class _Decoder(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        w = cfg.widths
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):  # from the bottleneck width down to widths[0]
            self.ups.append(nn.ConvTranspose2d(w[i], w[i - 1], 2, stride=2))
            self.blocks.append(ResBlock(2 * w[i - 1], w[i - 1]) if cfg.decoder_block == "res"
                               else _conv_bn(2 * w[i - 1], w[i - 1]))
        s, k, head = cfg.stem_factor, cfg.full_res_channels, cfg.head_channels
        self.to_full = nn.Sequential(nn.Conv2d(w[0], s * s * k, 1), nn.PixelShuffle(s))
        # The normalised input joins at full resolution so sharp band edges need not pass the stem.
        self.refine = nn.Conv2d(k + 1, head, 3, padding=1)
        self.refine_more = nn.ModuleList(nn.Conv2d(head, head, 3, padding=1)
                                         for _ in range(cfg.refine_layers - 1))
        self.out = nn.Conv2d(head, 1, 1)

    def forward(self, bottom, skips, image):
        x = bottom
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        full = self.to_full(x)
        x = F.silu(self.refine(torch.cat([full, image], dim=1)))
        for conv in self.refine_more:
            x = F.silu(x + conv(x))
        return torch.sigmoid(full[:, :1] + self.out(x))


class DualDecoderUNet(nn.Module):
    """``forward(x (N,1,H,W) in [0,1]) -> (A (N,1,H,W), B (N,1,H,W), wA (N,))``."""

    def __init__(self, cfg: UNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or UNetConfig()
        w = cfg.widths
        s = cfg.stem_factor
        self.stem = nn.Sequential(nn.PixelUnshuffle(s), _conv_bn(s * s, w[0]))
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for i in range(len(w) - 1):
            stage = _stage(w[i], w[i], cfg.blocks_per_level)
            if i in cfg.global_levels:
                stage.append(GlobalBlock(w[i], cfg.global_heads))
            self.enc.append(stage)
            self.down.append(_conv_bn(w[i], w[i + 1], stride=2))
        self.bottleneck = _stage(w[-1], w[-1], cfg.bottleneck_blocks)
        if len(w) - 1 in cfg.global_levels:
            self.bottleneck.append(GlobalBlock(w[-1], cfg.global_heads))
        self.dec_a = _Decoder(cfg)
        self.dec_b = _Decoder(cfg)
        self.weight_head = nn.Sequential(nn.Linear(2 * w[-1], cfg.weight_hidden), nn.SiLU(),
                                         nn.Linear(cfg.weight_hidden, 1))
        # Start by calling decoder A's constituent the heavier one (wA ~ 0.7): with the
        # permutation-invariant loss this breaks the A/B symmetry from the first step.
        nn.init.constant_(self.weight_head[-1].bias, 0.85)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = cfg.bn_momentum

    @property
    def multiple(self) -> int:
        return self.cfg.multiple

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """``x`` (N,1,H,W) -> (bottleneck, skips, x padded to a multiple of ``multiple``)."""
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            # reflect needs pad < size; replicate covers tiny inputs
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        skips = []
        y = self.stem(x)
        for enc, down in zip(self.enc, self.down):
            y = enc(y)
            skips.append(y)
            y = down(y)
        return self.bottleneck(y), skips, x

    @staticmethod
    def pooled(bottom: torch.Tensor) -> torch.Tensor:
        """What the weight head reads: the bottleneck's mean and max over the pattern, (N, 2C)."""
        return torch.cat([bottom.mean(dim=(2, 3)), bottom.amax(dim=(2, 3))], dim=1)

    def weight_of(self, bottom: torch.Tensor) -> torch.Tensor:
        """wA (N,): the weight head on the bottleneck."""
        return torch.sigmoid(self.weight_head(self.pooled(bottom))).squeeze(1)

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        y, skips, x = self.encode(x)
        w_a = self.weight_of(y)
        a = self.dec_a(y, skips, x)[..., :h, :w]
        b = self.dec_b(y, skips, x)[..., :h, :w]
        return a, b, w_a

    def forward_dominant(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N,1,H,W) -> the heavier constituent (N,1,H,W) and its weight (N,), as ``forward``
        orders them, with each pattern through only the decoder that holds it: half the decoding."""
        h, w = x.shape[-2:]
        y, skips, x = self.encode(x)
        w_a = self.weight_of(y)
        on_a = w_a >= 0.5
        w_dominant = torch.where(on_a, w_a, 1.0 - w_a)
        if bool(on_a.all()) or not bool(on_a.any()):
            decoder = self.dec_a if bool(on_a.all()) else self.dec_b
            return decoder(y, skips, x)[..., :h, :w], w_dominant
        out = None
        for decoder, rows in ((self.dec_a, on_a), (self.dec_b, ~on_a)):
            idx = torch.nonzero(rows).flatten()
            part = decoder(y[idx], [s[idx] for s in skips], x[idx])[..., :h, :w]
            if out is None:
                out = part.new_empty((len(rows),) + tuple(part.shape[1:]))
            out[idx] = part
        return out, w_dominant
