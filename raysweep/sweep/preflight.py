"""Everything checked before any Ray actor starts: URIs resolved, files present, headers compatible.

A failure here is a one-line ConfigError naming the field and what was expected; nothing is written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from raysweep.checkpoints import check_compatible, open_checkpoint
from raysweep.config import ConfigError, validate
from raysweep.merge.recipes import recipe_sources
from raysweep.prompts import PromptSet, load_prompts
from raysweep.results import join, read_json, remove_run
from raysweep.sweep.spec import SweepSpec, compile_trial, sweep_data

DEMO_SCHEME = "demo://"


def _resolve_strings(node: Any, resolve: Callable[[str], str]) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_strings(v, resolve) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_strings(v, resolve) for v in node]
    return resolve(node) if isinstance(node, str) else node


def load_spec(path: str, overrides: list[str] | None = None) -> SweepSpec:
    """Validate the config, then resolve `demo://name` strings to the demo world's local paths.

    Validation comes first so that a bad config fails in a second, not after building the world.
    """
    data = sweep_data(path, overrides)
    spec = validate(SweepSpec, data, path)
    if DEMO_SCHEME not in json.dumps(data):
        return spec
    from raysweep.demo.world import resolve_demo_uri

    def resolve(text: str) -> str:
        return str(resolve_demo_uri(text)) if text.startswith(DEMO_SCHEME) else text

    return validate(SweepSpec, _resolve_strings(data, resolve), path)


def _local_path_fields(node: Any, where: str):
    """Yield (field path, value) for every scorer field named `path` or ending in `_path`/`_dir`."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else key
            if isinstance(value, str) and (key == "path" or key.endswith(("_path", "_dir"))):
                yield here, value
            else:
                yield from _local_path_fields(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _local_path_fields(value, f"{where}[{i}]")


def preflight(spec: SweepSpec) -> PromptSet:
    """Check model folders, checkpoint headers, scorer files and the prompt set; return the prompts."""
    models = recipe_sources(spec.recipe)
    for role, folder in models.items():
        if not Path(folder).is_dir():
            raise ConfigError(f"recipe.models.{role}: model folder not found: {folder}")
    indexes = {role: open_checkpoint(folder) for role, folder in models.items()}
    check_compatible(indexes)
    num_layers = next(iter(indexes.values())).num_layers
    try:
        trials = spec.trial_params()
    except ValueError as err:
        raise ConfigError(f"search.grid: {err}") from None
    for params in trials:  # layer-dependent checks (pivots, block counts) for every trial
        try:
            compile_trial(spec, params, num_layers)
        except (ConfigError, ValueError) as err:
            raise ConfigError(f"search.grid {params}: {err}") from None
    scorers = [s.model_dump(mode="json") for s in spec.scorers]
    for where, value in _local_path_fields(scorers, "scorers"):
        if value and "://" not in value and not Path(value).exists():
            raise ConfigError(f"{where}: not found: {value}")
    prompts = load_prompts(spec.prompts)
    if spec.rungs and spec.rungs[-1] > len(prompts.prompts):
        raise ConfigError(
            f"rungs: last rung asks for {spec.rungs[-1]} prompts but the prompt set has "
            f"{len(prompts.prompts)}"
        )
    return prompts


def _comparable(spec_json: dict) -> dict:
    """What decides a run's results: everything but where it is written and how it is scheduled."""
    return {k: v for k, v in spec_json.items() if k not in ("output_dir", "resources")}


def prepare_run_dir(spec: SweepSpec, force: bool = False) -> None:
    """A run folder holds one config's results: reusing it with another config is an error
    (its old trials would mix into the new table) unless `force` deletes it first."""
    previous = read_json(join(spec.run_dir, "spec.json"))
    if previous is None:
        return
    if force:
        remove_run(spec.run_dir)
    elif _comparable(previous) != _comparable(spec.model_dump(mode="json")):
        raise ConfigError(
            f"{spec.run_dir}: holds a run of a different config; pick another name= or pass --force"
        )
