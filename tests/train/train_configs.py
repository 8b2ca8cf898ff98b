"""Helpers of the train tests (importable by name): a tiny training config, weight hashes."""

import hashlib

import torch


def small_config(**changes):
    """A tiny, fast training config (CPU, fp32, batch 4) for the 24x24 ``tiny_pairs`` stores."""
    cfg = {"seed": 0, "model": {"stem_factor": 2, "widths": [8, 16, 24], "head_channels": 2,
                                "weight_hidden": 8},
           "batch_size": 4, "lr": 0.003, "warmup_steps": 2, "max_steps": 4, "steps_per_epoch": 2,
           "val_fraction": 0.1, "val_max": 8, "val_batch_size": 8, "early_stop_patience": 0,
           "log_every": 1, "threads": 1, "device": "cpu", "precision": "fp32"}
    cfg.update(changes)
    return cfg


def weights_sha256(state_dict) -> str:
    """One hash over every tensor of a state_dict (names and bytes, sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name].cpu(), b[name].cpu()), name
