"""Config foundation: strict pydantic specs, YAML loading with `key=value` overrides, one-line errors.

Every user-settable object is a `Spec` (extra keys forbidden). Components define their own specs
(recipes in merge/, sampling in generate/, scorers in score/) on top of this module; the top-level
`SweepSpec` lives in sweep/spec.py. Loading never touches Ray or any model.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

SpecT = TypeVar("SpecT", bound="Spec")


class ConfigError(ValueError):
    """A bad config or input file. The message is one line naming the field or file; CLI exits 2."""


class Spec(BaseModel):
    """Base of every config object: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    return key.split("."), yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with each `a.b.c=value` override set (value parsed as YAML)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for key in keys[:-1]:
            if isinstance(node, list):
                node = node[int(key)]
            else:
                node = node.setdefault(key, {})
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file or a non-mapping is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return data


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line: `source: field.path: message` for the first error (plus a count of the rest)."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    kind = first["type"]
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required key missing"
    else:
        msg = first["msg"]
        if "input" in first and not isinstance(first["input"], (dict, list)):
            msg += f" (got {first['input']!r})"
    more = len(err.errors()) - 1
    tail = f" (+{more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {loc}: {msg}{tail}"


def validate(spec_cls: type[SpecT], data: dict, source: str) -> SpecT:
    """Validate `data` as `spec_cls`, turning pydantic's report into a one-line ConfigError."""
    try:
        return spec_cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except (TypeError, AttributeError) as err:  # a validator met a value of a shape it cannot read
        raise ConfigError(f"{source}: invalid value: {err}") from None


def load(spec_cls: type[SpecT], path: str | Path, overrides: list[str] | None = None) -> SpecT:
    """Read YAML at `path`, apply `key=value` overrides, validate as `spec_cls`."""
    data = apply_overrides(read_yaml(path), overrides or [])
    return validate(spec_cls, data, str(path))
