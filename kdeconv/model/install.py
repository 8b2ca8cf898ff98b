"""Installing a checkpoint as the package's default model, behind the map gates.

The check (``workflows/check_default_model.py``) runs a candidate through ingest, separate and
evaluate on ``make demo``'s simulated Ni map and on a simulated duplex steel map (ferrite +
austenite); ``install_default`` refuses a model that misses ``MAP_GATE`` on either, or loses more
than ``MAX_REGRESSION`` on the demo map against the model it replaces, and ships the claim rule
the check used with it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from kdeconv.config.claim import FALLBACK_CLAIM_RULE, ClaimRule
from kdeconv.errors import InputError

__all__ = ["MAP_GATE", "MAX_REGRESSION", "GATE_MAPS", "gate_passed", "failed_gates", "regression",
           "install_default", "install_adapt_base", "install_broad_looks",
           "install_small_patterns"]

# What a new default model must reach on each gate map (recovery at 3 degrees): pure pixels are
# most of a map, so a model that invents grains there is worse than one that misses a faint minority.
MAP_GATE = {"pure_ok": 0.97, "mixed_both": 0.90}
# ... and how much it may lose on the demo map against the installed model (1 point).
MAX_REGRESSION = 0.01
GATE_MAPS = ("demo_map", "duplex_map")


def gate_passed(scores: dict[str, Any]) -> bool:
    """Whether a gate map's scores (``pure_ok``, ``mixed_both``) reach ``MAP_GATE``."""
    return all(scores.get(key) is not None and scores[key] >= bar for key, bar in MAP_GATE.items())


def failed_gates(checked: dict[str, Any]) -> list[str]:
    """The gate maps of a check's JSON (``checked``) that are missing or miss ``MAP_GATE``."""
    return [name for name in GATE_MAPS if not (checked.get(name) and gate_passed(checked[name]))]


def regression(candidate: dict[str, Any], installed: dict[str, Any] | None) -> dict[str, float]:
    """Per gate score, how far the candidate falls below the installed model (positive = worse)."""
    if not installed:
        return {}
    return {key: round(installed[key] - candidate[key], 4) for key in MAP_GATE
            if installed.get(key) is not None and candidate.get(key) is not None}


def _installed_demo_map() -> dict[str, Any] | None:
    import kdeconv.model as model

    info = Path(model.DEFAULT_CHECKPOINT).with_suffix(".json")
    if not info.is_file():
        return None
    return ((json.loads(info.read_text()).get("test_quality") or {}).get("demo_map"))


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

    gates = {name: checked.get(name) for name in GATE_MAPS}
    failed = failed_gates(checked)
    worse = {key: drop for key, drop in regression(gates["demo_map"] or {}, _installed_demo_map()).items()
             if drop > MAX_REGRESSION}
    if not force and (failed or worse):
        raise InputError("not installed: " + "; ".join(
            [f"the {name} gate {MAP_GATE} did not pass ({json.dumps(gates[name])})" for name in failed]
            + [f"the demo map regresses by {drop:.3f} in {key} (at most {MAX_REGRESSION})"
               for key, drop in worse.items()]) + "; --force installs anyway")
    return _write_shipped(checkpoint, Path(model.DEFAULT_CHECKPOINT), checked, provenance)


def install_adapt_base(checkpoint: str | Path, checked: dict[str, Any],
                       provenance: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint`` as ``kdeconv.model.ADAPT_BASE_CHECKPOINT``, the model ``adapt``
    starts from, with ``adapt_base.json`` beside it. No map gate: adapt refits the weight head
    and the claim rule on each map, so the gate's fixed claim rule does not apply. Its weights
    are stored as fp16 (half the size; they load into the fp32 model), which keeps the package
    and the tree a GPU check carries small."""
    import kdeconv.model as model

    return _write_shipped(checkpoint, Path(model.ADAPT_BASE_CHECKPOINT), checked, provenance,
                          fp16_weights=True)


def install_broad_looks(checkpoint: str | Path, checked: dict[str, Any],
                        provenance: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint`` as ``kdeconv.model.BROAD_LOOKS_CHECKPOINT``, the model ``separate``
    weighs against the default on each map. It must pass the map gate (``MAP_GATE``) on both gate
    maps, but may fall below the installed default there: it is used only where it separates the
    map better. Stored as fp16, as the adapt base is."""
    import kdeconv.model as model

    return _install_gated(checkpoint, Path(model.BROAD_LOOKS_CHECKPOINT), checked, provenance)


def install_small_patterns(checkpoint: str | Path, checked: dict[str, Any],
                           provenance: dict[str, Any] | None = None) -> Path:
    """Write ``checkpoint`` as ``kdeconv.model.SMALL_PATTERNS_CHECKPOINT``, the model ``separate``
    runs on small patterns. Its gate maps are simulated at a small pattern size
    (``checked["gate_pattern_shape"]``, below ``SMALL_PATTERNS_BELOW``), where faint minorities
    are out of any model's reach and ``MAP_GATE``'s mixed bar does not apply: on both it must keep
    pure pixels to ``MAP_GATE`` and lose at most ``MAX_REGRESSION`` against the default on the same
    maps (``checked["default_at_gate_size"]``). Stored as fp16."""
    import kdeconv.model as model

    shape, below = checked.get("gate_pattern_shape"), model.SMALL_PATTERNS_BELOW
    if not shape or min(shape) >= below:
        raise InputError(f"not installed: the gate maps were not simulated below {below} px "
                         f"(gate_pattern_shape {shape}), where this model runs")
    default = checked.get("default_at_gate_size") or {}
    problems = []
    for name in GATE_MAPS:
        scores = checked.get(name) or {}
        if not (scores.get("pure_ok") or 0) >= MAP_GATE["pure_ok"]:
            problems.append(f"{name}: pure_ok {scores.get('pure_ok')} below {MAP_GATE['pure_ok']}")
        if not default.get(name):
            problems.append(f"{name}: no default model figures at {shape} to compare with")
            continue
        problems += [f"{name}: {drop:.3f} below the default in {key} (at most {MAX_REGRESSION})"
                     for key, drop in regression(scores, default[name]).items() if drop > MAX_REGRESSION]
    if problems:
        raise InputError("not installed: " + "; ".join(problems))
    return _write_shipped(checkpoint, Path(model.SMALL_PATTERNS_CHECKPOINT), checked, provenance,
                          fp16_weights=True)


def _install_gated(checkpoint: str | Path, target: Path, checked: dict[str, Any],
                   provenance: dict[str, Any] | None) -> Path:
    """``checkpoint`` as ``target`` (fp16) when both gate maps of ``checked`` pass ``MAP_GATE``."""
    failed = failed_gates(checked)
    if failed:
        raise InputError(f"not installed: the {', '.join(failed)} gate {MAP_GATE} did not pass")
    return _write_shipped(checkpoint, target, checked, provenance, fp16_weights=True)


def _write_shipped(checkpoint: str | Path, target: Path, checked: dict[str, Any],
                   provenance: dict[str, Any] | None, fp16_weights: bool = False) -> Path:
    """``checkpoint`` as ``target`` with the check's claim rule, and its record as JSON beside it."""
    import kdeconv.model as model
    from kdeconv.preprocess.resample import working_range_of

    ckpt = model.read_checkpoint(checkpoint)
    if "training_state" in ckpt:
        raise InputError("install best.pt (no optimiser state), not last.pt")
    rule = ClaimRule.checked(checked.get("claim_rule") or ckpt.get("claim_rule") or FALLBACK_CLAIM_RULE,
                             "the check's claim rule")
    model.checkpoint.update_checkpoint(checkpoint, target, fp16_weights=fp16_weights,
                                       claim_rule=rule.as_dict())
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
        "working_range": working_range_of(ckpt).as_dict(),
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
