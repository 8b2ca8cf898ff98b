"""Installing a checkpoint as the package's default model, behind the demo-map gate.

The check (``workflows/check_default_model.py``) runs a candidate through ingest, separate and
evaluate on ``make demo``'s simulated map; ``install_default`` refuses a model whose check did not
pass ``MAP_GATE``, and ships the claim rule the check used with it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from kdeconv.config.claim import FALLBACK_CLAIM_RULE, ClaimRule
from kdeconv.errors import InputError

__all__ = ["MAP_GATE", "gate_passed", "install_default"]

# What a new default model must reach on the demo map (recovery at 3 degrees): pure pixels are
# most of a map, so a model that invents grains there is worse than one that misses a faint minority.
MAP_GATE = {"pure_ok": 0.97, "mixed_both": 0.90}


def gate_passed(demo_map: dict[str, Any]) -> bool:
    """Whether the demo-map scores (``pure_ok``, ``mixed_both``) reach ``MAP_GATE``."""
    return all(demo_map.get(key) is not None and demo_map[key] >= bar for key, bar in MAP_GATE.items())


def _parameters(state_dict: dict) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(v.numel() for k, v in state_dict.items() if not k.endswith(buffers)))


def install_default(checkpoint: str | Path, checked: dict[str, Any], *, force: bool = False,
                    provenance: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint`` as ``kdeconv.model.DEFAULT_CHECKPOINT`` with the claim rule of its
    check (``checked``: the check's JSON; its ``demo_map`` must have passed the gate unless
    ``force``), and ``default.json`` beside it (sha256, model, training data, check results and
    ``provenance``). Returns the installed file."""
    import kdeconv.model as model

    gate = checked.get("demo_map")
    if not force and not (gate and gate.get("gate_passed")):
        raise InputError(f"not installed: the demo-map gate {MAP_GATE} did not pass "
                         f"({json.dumps(gate) if gate else 'no demo_map in the check JSON'}); "
                         "--force installs anyway")
    ckpt = model.read_checkpoint(checkpoint)
    if "training_state" in ckpt:
        raise InputError("install best.pt (no optimiser state), not last.pt")
    rule = ClaimRule.checked(checked.get("claim_rule") or ckpt.get("claim_rule") or FALLBACK_CLAIM_RULE,
                             "the check's claim rule")
    target = Path(model.DEFAULT_CHECKPOINT)
    model.set_claim_rule(checkpoint, target, rule.claim_weight, rule.claim_min_cm)
    stores = (ckpt.get("data") or {}).get("stores", [])
    info = {
        "file": target.name,
        "sha256": model.file_sha256(target),
        "size_bytes": target.stat().st_size,
        "installed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "kdeconv_version": ckpt.get("kdeconv_version"),
        "model_config": ckpt["model_config"],
        "parameters": _parameters(ckpt["state_dict"]),
        "normalization": ckpt["normalization"],
        "claim_rule": rule.as_dict(),
        "validation_metrics": ckpt.get("metrics"),
        "trained_on": [{"store": Path(s["path"]).name, "pairs": s["n"], "train": s["n_train"],
                        "val": s["n_val"], "shape": s["shape"],
                        "seed": (s.get("generate_config") or {}).get("seed"),
                        "source": ((s.get("generate_config") or {}).get("source") or {})}
                       for s in stores],
        "train_config": ckpt.get("train_config"),
        "test_quality": checked or None,
        **(provenance or {}),
    }
    target.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return target
