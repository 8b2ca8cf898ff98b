"""Pydantic config models, one per command, loaded from YAML (examples ship in ``kdeconv/configs/``).

Each stage's model lives in its own module (``config/generate.py`` …); this module holds the loader
and the choices several configs share. No torch is imported here or by any config module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kdeconv.errors import InputError

__all__ = ["StrictModel", "Precision", "Device", "load_config", "validate_config", "coerce_config"]

M = TypeVar("M", bound=BaseModel)

# Autocast dtype (kdeconv.model.precision): auto = bf16 on GPUs (fp16 + loss scaling before
# Ampere) and on CPUs with AMX; for inference also on CPUs with AVX512-BF16; fp32 elsewhere.
Precision = Literal["auto", "fp32", "bf16", "fp16"]
# auto = cuda when available, else cpu.
Device = Literal["auto", "cpu", "cuda"]


class StrictModel(BaseModel):
    """Base for all configs: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"invalid config {source}: {where}: {first['msg']}{more}"


def validate_config(model: type[M], data: dict[str, Any], source: str = "",
                    options: dict[str, Any] | None = None) -> M:
    """Validate ``data``; an error in a value that came from a command-line option (``options``:
    field -> value) blames the option, not the config file."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if options and field in options:
            value = options[field]
            shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            raise InputError(f"invalid --{field.replace('_', '-')} {shown}: {first['msg']}") from None
        raise InputError(_one_line(err, source)) from None


def load_config(model: type[M], path: str | Path | None, **overrides: Any) -> M:
    """Read YAML at ``path`` (or start empty), apply non-None ``overrides``, validate."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise InputError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise InputError(f"config {path} is not valid YAML: {_yaml_problem(err)}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read config {path}: {type(err).__name__}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"config {path} must be a mapping at the top level")
        data = loaded or {}
    options = {k: v for k, v in overrides.items() if v is not None}
    data.update(options)
    return validate_config(model, data, source, options)


def coerce_config(model: type[M], config: M | dict[str, Any] | str | Path) -> M:
    """``model`` from an instance of it, a dict or a YAML path (how every stage's ``run`` takes its
    config); an invalid one is a one-line ``InputError``. Keys given in the dict or YAML are the
    config's ``model_fields_set``."""
    if isinstance(config, model):
        return config
    if isinstance(config, dict):
        return validate_config(model, config, "(dict)")
    if isinstance(config, (str, Path)):
        return load_config(model, config)
    raise TypeError(f"config must be a {model.__name__}, a dict or a YAML path, "
                    f"not {type(config).__name__}")


def _yaml_problem(err: Exception) -> str:
    """What is wrong and where (1-based line and column), in one line."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
