"""The per-process model cache and device choice."""

import pytest

from kdeconv.errors import InputError
from kdeconv.separate import worker


class Loaded:
    def __init__(self, sha):
        self.sha256 = sha


def test_model_is_loaded_once_per_checkpoint_and_device(monkeypatch):
    monkeypatch.setattr(worker, "_CACHE", {})
    calls = []

    def loader(checkpoint, device):
        calls.append((checkpoint, device))
        return Loaded("a" * 64 if checkpoint == "a.pt" else "b" * 64)

    first = worker.cached_separator("a.pt", "a" * 64, "cpu", loader)
    assert worker.cached_separator("a.pt", "a" * 64, "cpu", loader) is first
    assert worker.cached_separator("a.pt", "a" * 64, "auto", loader) is first  # auto -> cpu here
    worker.cached_separator("b.pt", "b" * 64, "cpu", loader)
    assert calls == [("a.pt", "cpu"), ("b.pt", "cpu")]


def test_one_model_per_precision_with_the_real_loader(monkeypatch):
    from kdeconv.model import DEFAULT_CHECKPOINT, file_sha256

    monkeypatch.setattr(worker, "_CACHE", {})
    sha = file_sha256(DEFAULT_CHECKPOINT)
    fp32 = worker.cached_separator(None, sha, "cpu", None, "fp32")
    bf16 = worker.cached_separator(None, sha, "cpu", None, "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert worker.cached_separator(None, sha, "cpu", None, "bf16") is bf16


def test_checkpoint_changed_under_the_run_is_an_input_error(monkeypatch):
    monkeypatch.setattr(worker, "_CACHE", {})
    with pytest.raises(InputError, match="changed while separating"):
        worker.cached_separator("a.pt", "a" * 64, "cpu", lambda c, device: Loaded("c" * 64))


def test_devices(monkeypatch):
    monkeypatch.setattr(worker, "cuda_available", lambda: False)
    assert worker.resolve_device("auto") == "cpu" and worker.resolve_device("cpu") == "cpu"
    with pytest.raises(InputError, match="CUDA is not available"):
        worker.resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        worker.resolve_device("tpu")
    monkeypatch.setattr(worker, "cuda_available", lambda: True)
    monkeypatch.setattr(worker, "_worker_gpu", lambda: "cuda:1")
    assert worker.resolve_device("auto") == "cuda:1" and worker.resolve_device("cuda") == "cuda:1"


def test_malloc_tuning_is_safe_to_call_twice():
    import platform

    first = worker.tune_malloc()
    assert worker.tune_malloc() == first
    if platform.libc_ver()[0] == "glibc":
        assert first  # mallopt accepted
