"""Mixed precision: which autocast dtype a device gets, and bf16 inference against fp32."""

import numpy as np
import pytest
import torch

from kdeconv.errors import InputError
from kdeconv.model import load_separator
from kdeconv.model import precision as precision_mod
from kdeconv.model.precision import resolve_precision

CPU = torch.device("cpu")


def test_resolve_precision_on_cpu(monkeypatch):
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: True)  # AMX
    assert resolve_precision("auto", CPU) is torch.bfloat16
    assert resolve_precision("auto", CPU, training=True) is torch.bfloat16
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    # AVX512-BF16 only: bf16 for the forward pass, fp32 for training (no bf16 backward kernels)
    assert resolve_precision("auto", CPU) is torch.bfloat16
    assert resolve_precision("auto", CPU, training=True) is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert resolve_precision("auto", CPU) is None  # emulated bf16 is slower than fp32
    with pytest.raises(InputError, match="CUDA only"):
        resolve_precision("fp16", CPU)
    with pytest.raises(InputError, match="unknown precision"):
        resolve_precision("int4", CPU)


def test_cpu_probes_are_bools():
    assert isinstance(precision_mod.cpu_has_native_bf16(), bool)
    assert isinstance(precision_mod.cpu_infers_in_bf16(), bool)


def _ncc(x, y):
    x = x - x.mean(axis=(1, 2), keepdims=True)
    y = y - y.mean(axis=(1, 2), keepdims=True)
    return (x * y).sum(axis=(1, 2)) / np.sqrt((x * x).sum(axis=(1, 2)) * (y * y).sum(axis=(1, 2)))


def test_bf16_separation_matches_fp32():
    # The shipped model on mixtures of kikuchipy's bundled Ni patterns (60x60): bf16 autocast must
    # give the same patterns (up to rounding) and weights, on any CPU.
    import kikuchipy as kp

    pure = kp.data.nickel_ebsd_small().data.reshape(-1, 60, 60).astype(np.float32)
    c = 0.65 * pure[:-1] + 0.35 * pure[1:]
    fp32 = load_separator(None, device="cpu", precision="fp32")
    bf16 = load_separator(None, device="cpu", precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    ra, rb = fp32.separate(c), bf16.separate(c)
    assert np.abs(ra[2] - rb[2]).max() < 0.01
    for x, y in zip(ra[:2], rb[:2]):
        assert _ncc(x, y).min() > 0.998
        assert np.abs(x - y).max() < 0.06
