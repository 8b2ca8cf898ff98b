"""One device rule for train, separate (in process and on workers) and adapt."""

import pytest
import torch

from kdeconv.errors import InputError
from kdeconv.model import device


def test_devices_without_cuda(monkeypatch):
    monkeypatch.setattr(device, "cuda_available", lambda: False)
    assert device.resolve_device("auto") == torch.device("cpu")
    assert device.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="CUDA is not available"):
        device.resolve_device("cuda")
    for name in ("tpu", "mps"):
        with pytest.raises(InputError, match="unknown device"):
            device.resolve_device(name)


def test_auto_and_cuda_take_this_process_gpu(monkeypatch):
    monkeypatch.setattr(device, "cuda_available", lambda: True)
    monkeypatch.setattr(device, "_gpu_of_this_process", lambda: "cuda:1")
    assert device.resolve_device("auto") == torch.device("cuda:1")
    assert device.resolve_device("cuda") == torch.device("cuda:1")
    assert device.resolve_device("cuda:0") == torch.device("cuda:0")  # an explicit GPU is kept
