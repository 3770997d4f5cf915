"""The sweep config: what to merge, what to search, how to generate and score, where to write.

    raysweep sweep configs/demo.yaml name=try2 search.grid.alpha=[0,0.5,1]

Paths stay plain strings here (they may be `demo://...` or `s3://...`); files are checked by
`sweep.preflight` after validation and before any Ray actor starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raysweep.config import ConfigError, Spec, apply_overrides, read_yaml
from raysweep.generate.spec import GenerationSpec
from raysweep.merge.recipes import Recipe, compile_recipe, recipe_sources, revalidate
from raysweep.prompts import PromptSetSpec
from raysweep.score.registry import ScorerSpec


class SearchSpec(Spec):
    """Search space over recipe fields. `grid`: every combination of the listed values is a trial."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    metric: str = "reward"  # per-sample score column whose mean ranks trials
    mode: Literal["max", "min"] = "max"

    @field_validator("grid")
    @classmethod
    def _non_empty_values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid.{key}: expected a non-empty list of values")
        return grid


class ReferenceSpec(Spec):
    """Reference responses for pairwise scorers, generated once per actor by one source model.

    (A stored reference set is the prompt set's `reference_column` instead.)
    """

    source: str  # a role name in recipe.models, e.g. "sft"


class ResourcesSpec(Spec):
    """How trials map onto Ray: one long-lived evaluator actor per concurrent trial."""

    ray_address: str | None = None  # None: start (or join) a local Ray
    num_cpus: int | None = None  # for a local Ray; None = all cores
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = Field(1, ge=1)
    reuse_actors: bool = True  # keep sources and engine loaded across trials (the point of raysweep)


class SweepSpec(Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    output_dir: str = "runs"
    recipe: Recipe
    search: SearchSpec = Field(default_factory=SearchSpec)
    prompts: PromptSetSpec
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    scorers: list[ScorerSpec] = Field(min_length=1)
    references: ReferenceSpec | None = None
    rungs: list[int] | None = None  # cumulative prompt counts per rung; None = one rung, all prompts
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, rungs: list[int] | None) -> list[int] | None:
        if rungs is not None and (not rungs or rungs[0] < 1 or sorted(set(rungs)) != rungs):
            raise ValueError("expected a strictly increasing list of positive prompt counts")
        return rungs

    @model_validator(mode="after")
    def _grid_values_fit_recipe(self) -> "SweepSpec":
        roles = sorted(recipe_sources(self.recipe))
        if self.references is not None and self.references.source not in roles:
            raise ValueError(
                f"references.source: {self.references.source!r} is not one of recipe.models {roles}"
            )
        for key, values in self.search.grid.items():
            if key not in type(self.recipe).model_fields or key in ("method", "models"):
                raise ValueError(f"search.grid.{key}: not a searchable field of recipe method "
                                 f"{self.recipe.method!r}")
            for i, value in enumerate(values):
                recipe_for(self.recipe, {key: value}, f"search.grid.{key}[{i}]")
        return self

    @property
    def run_dir(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{self.name}"

    def trial_params(self) -> list[dict[str, Any]]:
        """Every grid combination, in a deterministic order, values as the recipe validates them
        (so `alpha: 1` and `alpha: 1.0` are one trial with one key)."""
        combos: list[dict[str, Any]] = [{}]
        for key, values in self.search.grid.items():
            combos = [{**c, key: v} for c in combos for v in values]
        normalized = []
        for combo in combos:
            dumped = recipe_for(self.recipe, combo).model_dump(mode="json")
            normalized.append({k: dumped.get(k, v) for k, v in combo.items()})
        return normalized


def recipe_for(recipe: Recipe, params: dict[str, Any], where: str = "params") -> Recipe:
    """The recipe with `params` applied, re-validated (a bad value is a ValueError naming `where`)."""
    try:
        return revalidate(recipe, params, where)
    except ConfigError as err:
        raise ValueError(str(err)) from None


def sweep_data(path: str | Path, overrides: list[str] | None = None) -> dict:
    """The raw config mapping: YAML file plus `key=value` overrides."""
    return apply_overrides(read_yaml(path), overrides or [])


def compile_trial(spec: SweepSpec, params: dict[str, Any], num_layers: int):
    """Coefficient table for one trial's config."""
    return compile_recipe(revalidate(spec.recipe, params, "params"), num_layers)
