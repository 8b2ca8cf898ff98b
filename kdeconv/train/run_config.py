"""Which ``TrainConfig`` a run uses.

- a new run: the given TrainConfig, dict or YAML path, validated;
- a resumed run: the config stored in its last.pt; the keys a given config sets must equal it,
  except the budget keys (``BUDGET_KEYS``), which override it;
- a warm start (``init_checkpoint``): the model and normalization sections come from that
  checkpoint, whose sha256 is recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdeconv import config as configs
from kdeconv.config import validate_config
from kdeconv.config.model import UNetConfig
from kdeconv.config.train import BUDGET_KEYS, DEFAULT_INIT, NormalizationConfig, TrainConfig
from kdeconv.errors import InputError

__all__ = ["coerce_config", "resume_config", "init_checkpoint_path", "resolve_init"]


def coerce_config(config: TrainConfig | dict[str, Any] | str | Path) -> TrainConfig:
    """A TrainConfig from a TrainConfig, a dict or a YAML path; invalid ones are InputErrors.

    Keys given in the dict or YAML are the config's ``model_fields_set``.
    """
    return configs.coerce_config(TrainConfig, config)


def _differing(a: dict[str, Any], b: dict[str, Any], keys) -> list[str]:
    return sorted(k for k in keys if a.get(k) != b.get(k))


def resume_config(ckpt: dict[str, Any], given: TrainConfig | None) -> TrainConfig:
    """The stored config of the run being resumed, with ``given``'s budget keys applied.

    Every other key ``given`` sets must equal the stored one (InputError naming them).
    """
    stored = ckpt.get("train_config")
    if not stored:
        raise InputError("last.pt holds no training config; it cannot be resumed")
    cfg = validate_config(TrainConfig, stored, "stored in last.pt")
    if given is None:
        return cfg
    mine, theirs = given.model_dump(mode="json"), cfg.model_dump(mode="json")
    diff = _differing(mine, theirs, given.model_fields_set - set(BUDGET_KEYS))
    if diff:
        raise InputError(f"the config differs from the run being resumed in: {', '.join(diff)} "
                         "(start a new run with --overwrite or another --out)")
    data = cfg.model_dump()
    data.update({k: getattr(given, k) for k in BUDGET_KEYS if k in given.model_fields_set})
    return validate_config(TrainConfig, data, "for the resumed run")


def init_checkpoint_path(name: str) -> Path:
    """The file ``init_checkpoint`` names ("default" = the model shipped in the package)."""
    if name != DEFAULT_INIT:
        return Path(name)
    from kdeconv.model.checkpoint import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        raise InputError(f"the shipped default model is missing ({DEFAULT_CHECKPOINT}); reinstall "
                         "kdeconv or give init_checkpoint a path")
    return DEFAULT_CHECKPOINT


def resolve_init(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """Read ``cfg.init_checkpoint``; returns the config with the checkpoint's model and
    normalization sections and its sha256, and the checkpoint dict.

    A model or normalization section that the config sets itself must equal the checkpoint's.
    """
    from kdeconv.model.checkpoint import file_sha256, read_checkpoint

    path = init_checkpoint_path(cfg.init_checkpoint)
    ckpt = read_checkpoint(path)
    sha = file_sha256(path)
    if cfg.init_checkpoint_sha256 is not None and cfg.init_checkpoint_sha256 != sha:
        raise InputError(f"init_checkpoint {path} has sha256 {sha[:12]}…, the config expects "
                         f"{cfg.init_checkpoint_sha256[:12]}…")
    sections = {"model": validate_config(UNetConfig, ckpt["model_config"], f"in {path}"),
                "normalization": validate_config(NormalizationConfig, ckpt["normalization"],
                                                 f"in {path}")}
    for key, theirs in sections.items():
        if key not in cfg.model_fields_set:
            continue
        a, b = getattr(cfg, key).model_dump(mode="json"), theirs.model_dump(mode="json")
        diff = _differing(a, b, a)
        if diff:
            raise InputError(f"the config's {key} section differs from init_checkpoint {path} in: "
                             f"{', '.join(diff)} (leave the section out to use the checkpoint's)")
    data = cfg.model_dump()
    data.update({key: value.model_dump() for key, value in sections.items()})
    data["init_checkpoint_sha256"] = sha
    return validate_config(TrainConfig, data, f"with init_checkpoint {path}"), ckpt
