"""Scorer registry: name -> (spec class, scorer class), both "module:attr", imported only when used.

    scorers:
      - {name: reward_model, path: models/rm, batch_size: 16}
      - {name: pairrm, path: models/PairRM-hf}
      - {name: rules, rules: [{column: has_answer, kind: regex, pattern: "####\\s*\\d+"}]}
      - {name: lmeval, include_path: raysweep/demo/lmeval, tasks: [demo_facts], limit: 100}

`ScorerSpec` is the pydantic union of every registered spec class, discriminated by `name`; it is
built on first access (spec modules keep heavy imports inside functions, so this stays cheap).
`make_scorer(spec)` builds the scorer: a `SampleScorer` (has `score`) or a `ModelBenchmark` (has
`evaluate`). A scorer class is constructed as `cls(spec)`.
"""
from __future__ import annotations

import functools
import importlib
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from raysweep.config import ConfigError, Spec, format_validation_error
from raysweep.score.base import ModelBenchmark, SampleScorer

SCORERS: dict[str, tuple[str, str]] = {
    "reward_model": (
        "raysweep.score.reward_model:RewardModelSpec", "raysweep.score.reward_model:RewardModelScorer"
    ),
    "pairrm": ("raysweep.score.pairrm:PairRMSpec", "raysweep.score.pairrm:PairRMScorer"),
    "rules": ("raysweep.score.rules:RulesSpec", "raysweep.score.rules:RulesScorer"),
    "lmeval": ("raysweep.score.lmeval:LMEvalSpec", "raysweep.score.lmeval:LMEvalBenchmark"),
    "demo_task": (
        "raysweep.score.demo_task:DemoTaskScorerSpec", "raysweep.score.demo_task:DemoTaskScorer"
    ),
}


def _resolve(target: str) -> Any:
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def valid_names() -> str:
    return ", ".join(sorted(SCORERS))


@functools.cache
def _union() -> Any:
    specs = tuple(_resolve(spec_target) for spec_target, _ in SCORERS.values())
    return Annotated[Union[specs], Field(discriminator="name")]  # noqa: UP007 (runtime tuple)


@functools.cache
def _adapter() -> TypeAdapter:
    return TypeAdapter(_union())


def __getattr__(attr: str) -> Any:
    # `from raysweep.score.registry import ScorerSpec` builds the union on first use (PEP 562).
    if attr == "ScorerSpec":
        return _union()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def parse_scorer(data: dict, source: str = "scorer") -> Spec:
    """Validate one scorer mapping; any error is a one-line ConfigError (unknown names list the valid)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'name' key, got {type(data).__name__}")
    name = data.get("name")
    if name is None:
        raise ConfigError(f"{source}: name: required key missing; valid scorers: {valid_names()}")
    if not isinstance(name, str) or name not in SCORERS:
        raise ConfigError(f"{source}: name: unknown scorer {name!r}; valid: {valid_names()}")
    try:
        return _adapter().validate_python(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def make_scorer(spec: Spec | dict) -> SampleScorer | ModelBenchmark:
    """Build the scorer named by `spec.name` (a validated spec, or a raw mapping to validate)."""
    if isinstance(spec, dict):
        spec = parse_scorer(spec)
    name = getattr(spec, "name", None)
    if not isinstance(name, str) or name not in SCORERS:
        raise ConfigError(f"scorers: unknown scorer {name!r}; valid: {valid_names()}")
    return _resolve(SCORERS[name][1])(spec)
