"""The per-process model cache."""

import pytest

from kdeconv.errors import InputError
from kdeconv.separate import worker


class Loaded:
    def __init__(self, sha):
        self.sha256 = sha


def test_model_is_loaded_once_per_checkpoint_and_device(monkeypatch):
    import kdeconv.model

    monkeypatch.setattr(worker, "_CACHE", {})
    calls = []

    def load_separator(checkpoint, device, precision="auto"):
        calls.append((checkpoint, device))
        return Loaded("a" * 64 if checkpoint == "a.pt" else "b" * 64)

    monkeypatch.setattr(kdeconv.model, "load_separator", load_separator)
    first = worker.cached_separator("a.pt", "a" * 64, "cpu")
    assert worker.cached_separator("a.pt", "a" * 64, "cpu") is first
    assert worker.cached_separator("a.pt", "a" * 64, "auto") is first  # auto -> cpu here
    worker.cached_separator("b.pt", "b" * 64, "cpu")
    assert calls == [("a.pt", "cpu"), ("b.pt", "cpu")]


def test_one_model_per_precision(monkeypatch):
    from kdeconv.model import DEFAULT_CHECKPOINT, file_sha256

    monkeypatch.setattr(worker, "_CACHE", {})
    sha = file_sha256(DEFAULT_CHECKPOINT)
    fp32 = worker.cached_separator(None, sha, "cpu", "fp32")
    bf16 = worker.cached_separator(None, sha, "cpu", "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert worker.cached_separator(None, sha, "cpu", "bf16") is bf16


def test_checkpoint_changed_under_the_run_is_an_input_error(monkeypatch):
    import kdeconv.model

    monkeypatch.setattr(worker, "_CACHE", {})
    monkeypatch.setattr(kdeconv.model, "load_separator", lambda c, device, precision: Loaded("c" * 64))
    with pytest.raises(InputError, match="changed while separating"):
        worker.cached_separator("a.pt", "a" * 64, "cpu")


def test_malloc_tuning_is_safe_to_call_twice():
    import platform

    from kdeconv.cluster import tune_malloc

    first = tune_malloc()
    assert tune_malloc() == first
    if platform.libc_ver()[0] == "glibc":
        assert first  # mallopt accepted


def _load_default_model() -> int:
    import torch

    from kdeconv.model import DEFAULT_CHECKPOINT, file_sha256

    worker.cached_separator(None, file_sha256(DEFAULT_CHECKPOINT), "cpu", "fp32")
    return torch.get_num_threads()


def test_a_worker_runs_torch_on_its_own_threads_even_after_a_warm_up_outside_a_task():
    # client.run is not a task: the model loaded there sees no worker and torch keeps every core;
    # the first task must still bring torch down to the worker's single thread
    pytest.importorskip("distributed")
    from kdeconv.cluster import ClusterConfig, open_client

    with open_client(ClusterConfig(workers=1, threads_per_worker=1)) as client:
        client.run(_load_default_model)
        assert client.submit(_load_default_model, pure=False).result() == 1
