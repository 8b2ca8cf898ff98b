"""Inference speed of the shipped model on the CPU, its size and FLOPs.

Rows, measured in one run (ratios; the machine is shared and noisy):
- patterns/s of ``Separator.separate`` (normalisation + network + ordering) at 60x60, 120x120 and
  240x240 against a classic full-resolution U-Net (the naive design: no space-to-depth stem,
  NCHW, one decoder with 2 outputs, comparable parameter count) run bare on the same tensors;
- the network alone against ``separate`` (what normalisation and bookkeeping cost);
- channels_last against NCHW for the shipped network;
- ``separate`` at the default precision (bf16 autocast on CPUs with AMX) against fp32;
- parameter count and MFLOP per pattern (torch.utils.flop_counter) of both networks.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: shared cores (see kdeconv.model)

import numpy as np
import torch
from torch import nn

SIZES = (60, 120, 240)


class ClassicUNet(nn.Module):
    """The naive baseline: double 3x3 convs at full resolution, max-pool, 4 levels, 2 outputs."""

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())
        self.enc = nn.ModuleList()
        cin = 1
        for w in widths:
            self.enc.append(block(cin, w))
            cin = w
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2)
                                 for i in range(len(widths) - 1, 0, -1))
        self.dec = nn.ModuleList(block(2 * widths[i - 1], widths[i - 1])
                                 for i in range(len(widths) - 1, 0, -1))
        self.out = nn.Conv2d(widths[0], 2, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        m = 2 ** (len(self.enc) - 1)
        x = nn.functional.pad(x, (0, (-w) % m, 0, (-h) % m), mode="reflect")
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x)
            if i < len(self.enc) - 1:
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], 1))
        return torch.sigmoid(self.out(x))[..., :h, :w]


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _mflop(model, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.rand(1, 1, size, size))
    return counter.get_total_flops() / 1e6


def _rate(fn, n: int, min_seconds: float) -> float:
    fn()  # warm-up (oneDNN picks kernels per shape)
    best, spent = 0.0, 0.0
    while spent < min_seconds or best == 0.0:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, n / dt)
    return best


def run(quick: bool = False) -> list[dict]:
    from benchmarks.common import make_row
    from kdeconv.model import load_separator
    from kdeconv.model.precision import autocast
    from kdeconv.separate.chunk import effective_batch_size

    torch.set_num_threads(min(2, torch.get_num_threads()))
    sep = load_separator(None, device="cpu")  # precision auto, as `kdeconv separate` runs it
    sep32 = load_separator(None, device="cpu", precision="fp32")
    net = sep.model
    classic = ClassicUNet().eval()
    rows = []
    n_params, c_params = _params(net), _params(classic)
    rows.append(make_row("model", "parameters", float(n_params), "classic U-Net", float(c_params),
                         note=f"shipped model {sep.sha256[:12]}; ratio = classic/shipped (smaller is better)",
                         higher_is_better=False))
    min_s = 0.5 if quick else 4.0
    rng = np.random.default_rng(0)
    for size in SIZES:
        n = 72 if size <= 120 else 36  # whole CPU batches in fp32 and bf16
        counts = rng.poisson(500, (n, size, size)).astype(np.float32)
        x = torch.rand(n, 1, size, size)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        mf, cmf = _mflop(net, size), _mflop(classic, size)
        rows.append(make_row("model", f"MFLOP/pattern {size}x{size}", round(mf, 1), "classic U-Net",
                             round(cmf, 1), note="torch FlopCounterMode; ratio = classic/shipped",
                             higher_is_better=False))
        batch = effective_batch_size(None, (size, size), "cpu", sep.precision)
        with torch.inference_mode():
            sep_rate = _rate(lambda counts=counts: sep.separate(counts), n, min_s)
            whole_rate = _rate(lambda counts=counts, n=n: sep.separate(counts, batch_size=n), n, min_s)
            rows.append(make_row("model", f"patterns/s separate {size}x{size}, CPU batch", round(sep_rate, 1),
                                 f"one batch of {n}", round(whole_rate, 1),
                                 note=f"separate's CPU batch ({batch} patterns, 1 MiB of input) against "
                                      f"all {n} in one call, 2 threads, {sep.precision}"))
            with autocast(sep.device, sep.autocast_dtype):
                net_rate = _rate(lambda x_cl=x_cl, n=n, b=batch: [net(x_cl[i:i + b]) for i in range(0, n, b)],
                                 n, min_s)
            if size == 120 or not quick:
                classic_rate = _rate(lambda x=x: classic(x), n, min_s)
                rows.append(make_row("model", f"patterns/s separate {size}x{size}", round(sep_rate, 1),
                                     "classic U-Net forward only", round(classic_rate, 1),
                                     note="separate = normalise + network + dominant ordering, batch "
                                          f"{batch}, 2 threads, {sep.precision}; baseline is its bare "
                                          "fp32 forward pass"))
            if sep.precision != "fp32":
                rows.append(make_row("model", f"patterns/s separate {sep.precision} {size}x{size}",
                                     round(sep_rate, 1), "separate fp32",
                                     round(_rate(lambda counts=counts: sep32.separate(counts), n, min_s), 1),
                                     note="the default precision on this CPU against plain fp32"))
            rows.append(make_row("model", f"patterns/s network only {size}x{size}", round(net_rate, 1),
                                 "separate (with normalisation)", round(sep_rate, 1),
                                 note="ratio > 1: what normalisation/bookkeeping cost"))
            if size == 120:
                ncl = net.to(memory_format=torch.contiguous_format)
                with autocast(sep.device, sep.autocast_dtype):
                    nchw_rate = _rate(lambda ncl=ncl, x=x: ncl(x), n, min_s)
                net.to(memory_format=torch.channels_last)
                rows.append(make_row("model", "patterns/s network channels_last 120x120", round(net_rate, 1),
                                     "same network NCHW", round(nchw_rate, 1)))
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for row in run(quick="--quick" in sys.argv):
        print(row)
