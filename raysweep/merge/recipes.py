"""Merge recipes (YAML specs) and their compilation to one CoefficientTable.

    method: expo            models: {sft: PATH, aligned: PATH}      alpha: 0.5
    method: soup            models: {a: PATH, b: PATH, ...}         weights: {a: 0.5, b: 0.5}
    method: partwise        models: {before: PATH, after: PATH}     split: "10#20|0.4|0.3|0.2"
                            head_ratio: 0.3
    method: task_arithmetic models: {base: PATH, x: PATH, ...}      lambdas: {x: 0.7, ...}

Coefficients (METHODS.md): ExPO (1 + alpha_g, -alpha_g) over (aligned, sft); soup w; partwise
(r_b, 1 - r_b) over (before, after); task arithmetic (1 - sum lambda, lambda_1, ...) over
(base, others...). Every searchable value is a plain field, so a sweep can set it with
`recipe.model_copy(update=...)` and re-validate with `revalidate`.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from raysweep.config import ConfigError, Spec, format_validation_error
from raysweep.merge.coefficients import CoefficientTable, all_groups

_GROUP = re.compile(r"^(embed|final_norm|lm_head|layer\.\d+)$")


class ExpoModels(Spec):
    sft: str
    aligned: str


class ExpoRecipe(Spec):
    """theta = (1 + alpha) aligned - alpha sft; per-block and per-group alphas optional.

    block_alphas: k values; the layers are cut into k contiguous blocks of near-equal size (layer i
    is in block floor(i * k / num_layers)) and block b uses block_alphas[b]. Embeddings, final norm
    and lm_head use `alpha`. overrides: {group: alpha} for single groups ("layer.3", "lm_head"),
    applied last.
    """

    method: Literal["expo"] = "expo"
    models: ExpoModels
    alpha: float = 0.5
    block_alphas: list[float] | None = None
    overrides: dict[str, float] = Field(default_factory=dict)

    @field_validator("alpha", "block_alphas", "overrides")
    @classmethod
    def _finite(cls, value):
        return _check_finite(value)

    @field_validator("block_alphas")
    @classmethod
    def _nonempty(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not value:
            raise ValueError("give at least one alpha (or leave block_alphas out)")
        return value

    @field_validator("overrides")
    @classmethod
    def _groups(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_group_keys(value)


class SoupRecipe(Spec):
    """theta = sum_i w_i theta_i with sum w = 1 (uniform 1/k when weights are left out)."""

    method: Literal["soup"] = "soup"
    models: dict[str, str]
    weights: dict[str, float] | None = None

    @field_validator("models")
    @classmethod
    def _two_or_more(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) < 2:
            raise ValueError(f"a soup needs at least 2 models (got {len(value)})")
        return value

    @field_validator("weights")
    @classmethod
    def _finite(cls, value):
        return _check_finite(value)

    @model_validator(mode="after")
    def _weights_match(self) -> SoupRecipe:
        if self.weights is not None:
            _same_keys("weights", self.weights, list(self.models))
            total = sum(self.weights.values())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"weights: must sum to 1 (got {total:g})")
        return self


class PartwiseModels(Spec):
    before: str
    after: str


class PartwiseRecipe(Spec):
    """AMA partwise averaging: theta = r_b before + (1 - r_b) after.

    `split` is AMA's string verbatim, "10#20|0.4|0.3|0.2" (a leading "split|" is accepted):
    pivots 10 and 20 cut 0-based layers into 0-10, 11-20, 21-end (a pivot belongs to the lower
    block); one ratio per block; embeddings take the first block's ratio; final norm and lm_head
    take `head_ratio`. `split` is read into the plain fields `pivots` and `ratios` (give either).
    """

    method: Literal["partwise"] = "partwise"
    models: PartwiseModels
    split: str | None = Field(default=None, exclude=True)
    pivots: list[int] = Field(default_factory=list)
    ratios: list[float] | None = None
    head_ratio: float

    @model_validator(mode="before")
    @classmethod
    def _read_split(cls, data):
        if isinstance(data, dict) and data.get("split") is not None:
            if data.get("pivots") or data.get("ratios") is not None:
                raise ValueError("split: give either split or pivots + ratios, not both")
            data = {**data, **parse_split(data["split"]), "split": None}
        return data

    @field_validator("ratios", "head_ratio")
    @classmethod
    def _unit(cls, value):
        for r in [value] if isinstance(value, float) else value or []:
            if not (0.0 <= r <= 1.0):
                raise ValueError(f"ratio {r!r} is outside [0, 1]")
        return value

    @model_validator(mode="after")
    def _shape(self) -> PartwiseRecipe:
        if self.ratios is None:
            raise ValueError("ratios: required (or give split)")
        if any(b <= a for a, b in zip(self.pivots, self.pivots[1:])) or any(p < 0 for p in self.pivots):
            raise ValueError(f"pivots: must be increasing layer indices >= 0 (got {self.pivots})")
        if len(self.ratios) != len(self.pivots) + 1:
            raise ValueError(
                f"ratios: {len(self.pivots)} pivot(s) need {len(self.pivots) + 1} ratios "
                f"(got {len(self.ratios)})"
            )
        return self


class TaskArithmeticRecipe(Spec):
    """theta = base + sum_i lambda_i (theta_i - base): c = (1 - sum lambda, lambda_1, ...)."""

    method: Literal["task_arithmetic"] = "task_arithmetic"
    models: dict[str, str]
    lambdas: dict[str, float]

    @field_validator("lambdas")
    @classmethod
    def _finite(cls, value):
        return _check_finite(value)

    @model_validator(mode="after")
    def _roles(self) -> TaskArithmeticRecipe:
        if "base" not in self.models:
            raise ValueError("models: needs a 'base' model")
        others = [m for m in self.models if m != "base"]
        if not others:
            raise ValueError("models: needs at least one model besides 'base'")
        _same_keys("lambdas", self.lambdas, others)
        return self


Recipe = Annotated[
    Union[ExpoRecipe, SoupRecipe, PartwiseRecipe, TaskArithmeticRecipe],
    Field(discriminator="method"),
]
RECIPES: dict[str, type[Spec]] = {
    "expo": ExpoRecipe, "soup": SoupRecipe, "partwise": PartwiseRecipe,
    "task_arithmetic": TaskArithmeticRecipe,
}


def parse_recipe(data: dict, source: str) -> Recipe:
    """Validate a recipe mapping; a bad one is a one-line ConfigError naming the field."""
    method = data.get("method") if isinstance(data, dict) else None
    if not isinstance(method, str) or method not in RECIPES:
        raise ConfigError(
            f"{source}: method: expected one of {', '.join(RECIPES)} (got {method!r})"
        )
    try:
        return RECIPES[method].model_validate(data)
    except ValidationError as err:
        line = format_validation_error(err, source)
        # model-level checks carry no location; their message starts with the field it concerns
        line = line.replace(f"{source}: : ", f"{source}: ", 1).replace("Value error, ", "", 1)
        raise ConfigError(line) from None


def revalidate(recipe: Recipe, update: dict, source: str = "recipe") -> Recipe:
    """`recipe` with fields in `update` replaced, fully re-validated (what a sweep trial uses).

    A new partwise `split` string replaces the recipe's pivots and ratios.
    """
    data = recipe.model_dump()
    if update.get("split") is not None:
        data.pop("pivots", None)
        data.pop("ratios", None)
    return parse_recipe({**data, **update}, source)


def parse_split(text: str) -> dict:
    """AMA split string -> {"pivots": [...], "ratios": [...]}: "10#20|0.4|0.3|0.2"."""
    if not isinstance(text, str):  # ValueError: pydantic reports it as a field error, not TypeError
        raise ValueError(f"split: expected a string like '10#20|0.4|0.3|0.2' (got {text!r})")
    parts = text.strip().split("|")
    if parts and parts[0] == "split":
        parts = parts[1:]
    if len(parts) < 2:
        raise ValueError(f"split: expected 'P1#P2|r0|r1|r2' (got {text!r})")
    try:
        pivots = [int(p) for p in parts[0].split("#") if p.strip()]
        ratios = [float(r) for r in parts[1:]]
    except ValueError:
        raise ValueError(f"split: pivots must be integers and ratios numbers (got {text!r})") from None
    return {"pivots": pivots, "ratios": ratios}


def compile_recipe(recipe: Recipe, num_layers: int) -> CoefficientTable:
    """The coefficient table of `recipe` for a model with `num_layers` layers (every group)."""
    groups = all_groups(num_layers)
    if isinstance(recipe, ExpoRecipe):
        return _compile_expo(recipe, num_layers, groups)
    if isinstance(recipe, SoupRecipe):
        names = list(recipe.models)
        weights = recipe.weights or {n: 1.0 / len(names) for n in names}
        row = tuple(weights[n] for n in names)
        return CoefficientTable(tuple(names), {g: row for g in groups})
    if isinstance(recipe, PartwiseRecipe):
        return _compile_partwise(recipe, num_layers, groups)
    if isinstance(recipe, TaskArithmeticRecipe):
        others = [m for m in recipe.models if m != "base"]
        lambdas = [recipe.lambdas[m] for m in others]
        row = (1.0 - math.fsum(lambdas), *lambdas)
        return CoefficientTable(("base", *others), {g: row for g in groups})
    raise TypeError(f"not a recipe: {type(recipe).__name__}")


def _compile_expo(recipe: ExpoRecipe, num_layers: int, groups: list[str]) -> CoefficientTable:
    alphas = {g: recipe.alpha for g in groups}
    if recipe.block_alphas is not None:
        k = len(recipe.block_alphas)
        if k > num_layers:
            raise ConfigError(f"block_alphas: {k} blocks for a model with {num_layers} layers")
        for i in range(num_layers):
            alphas[f"layer.{i}"] = recipe.block_alphas[i * k // num_layers]
    for group, alpha in recipe.overrides.items():
        if group not in alphas:
            raise ConfigError(f"overrides: {group} is not a group of a {num_layers}-layer model")
        alphas[group] = alpha
    return CoefficientTable(("aligned", "sft"), {g: (1.0 + a, -a) for g, a in alphas.items()})


def _compile_partwise(recipe: PartwiseRecipe, num_layers: int, groups: list[str]) -> CoefficientTable:
    for p in recipe.pivots:
        if p >= num_layers - 1:
            raise ConfigError(
                f"split: pivot {p} is beyond the last layer that can end a block "
                f"(model has {num_layers} layers, 0-{num_layers - 1})"
            )
    ratios = recipe.ratios or []
    table: dict[str, tuple[float, float]] = {}
    for group in groups:
        if group.startswith("layer."):
            i = int(group.split(".")[1])
            r = ratios[sum(1 for p in recipe.pivots if i > p)]
        elif group == "embed":
            r = ratios[0]
        else:
            r = recipe.head_ratio
        table[group] = (r, 1.0 - r)
    return CoefficientTable(("before", "after"), table)


def recipe_sources(recipe: Recipe) -> dict[str, str]:
    """Role name -> checkpoint path (a plain string), for the roles compile_recipe's table names."""
    models = recipe.models
    return dict(models.model_dump() if isinstance(models, BaseModel) else models)


def config_source(recipe: Recipe) -> str:
    """Role whose config and tokenizer the merged model inherits."""
    if isinstance(recipe, ExpoRecipe):
        return "aligned"
    if isinstance(recipe, PartwiseRecipe):
        return "after"
    if isinstance(recipe, TaskArithmeticRecipe):
        return "base"
    return next(iter(recipe.models))


def _check_finite(value):
    # format_validation_error already appends "(got X)" for a scalar input, not for a list/dict
    if isinstance(value, (dict, list)):
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, v in pairs:
            if not math.isfinite(v):
                raise ValueError(f"{key}: must be a finite number (got {v!r})")
    elif value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _check_group_keys(value: dict[str, float]) -> dict[str, float]:
    for key in value:
        if not _GROUP.match(key):
            raise ValueError(f"{key!r} is not a group (embed, layer.<i>, final_norm, lm_head)")
    return value


def _same_keys(field: str, given: dict, expected: list[str]) -> None:
    if set(given) != set(expected):
        raise ValueError(f"{field}: expected keys {sorted(expected)} (got {sorted(given)})")
