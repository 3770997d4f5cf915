"""Rule scorer: regex, exact-match and length checks, for tasks with known answers and for the demo.

    - name: rules
      rules:
        - {column: has_answer, kind: regex, pattern: "####\\s*-?\\d+"}         # 1.0 if found
        - {column: answer_ok, kind: regex, pattern: "####\\s*(-?\\d+)", compare: reference}
        - {column: exact, kind: exact}                   # response == reference (stripped)
        - {column: says_yes, kind: exact, target: "Yes", ignore_case: true}
        - {column: words, kind: length, unit: words}     # the length itself
        - {column: short_enough, kind: length, unit: chars, max: 400}   # 1.0 if within bounds

Each rule yields one column. Regex and exact rules give 1.0 / 0.0. A regex rule with
`compare: reference` extracts the first capture group (the whole match if the pattern has none) and
scores 1.0 when it equals the sample's reference (both stripped; case folded with `ignore_case`).
An exact rule compares with `target`, or with the reference when `target` is unset. A length rule
gives the length in `unit`, or 1.0 / 0.0 for "within [min, max]" when either bound is set.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from raysweep.config import ConfigError, Spec


class RegexRule(Spec):
    column: str
    kind: Literal["regex"]
    pattern: str
    match: Literal["search", "fullmatch"] = "search"
    compare: Literal["none", "reference"] = "none"
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"invalid regular expression: {err}") from None
        return pattern

    def apply(self, response: str, reference: str | None) -> float:
        regex = re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)
        found = regex.search(response) if self.match == "search" else regex.fullmatch(response.strip())
        if found is None:
            return 0.0
        if self.compare == "none":
            return 1.0
        got = found.group(1) if regex.groups else found.group(0)
        return float(_same(got or "", reference or "", self.ignore_case))


class ExactRule(Spec):
    column: str
    kind: Literal["exact"]
    target: str | None = None  # None: the sample's reference
    ignore_case: bool = False

    def apply(self, response: str, reference: str | None) -> float:
        target = self.target if self.target is not None else reference
        return float(_same(response, target or "", self.ignore_case))


class LengthRule(Spec):
    column: str
    kind: Literal["length"]
    unit: Literal["chars", "words", "lines"] = "words"
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "LengthRule":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self

    def apply(self, response: str, reference: str | None) -> float:
        if self.unit == "chars":
            length = len(response)
        elif self.unit == "words":
            length = len(response.split())
        else:
            length = len(response.splitlines())
        if self.min is None and self.max is None:
            return float(length)
        low_ok = self.min is None or length >= self.min
        high_ok = self.max is None or length <= self.max
        return float(low_ok and high_ok)


Rule = Annotated[Union[RegexRule, ExactRule, LengthRule], Field(discriminator="kind")]


def _same(a: str, b: str, ignore_case: bool) -> bool:
    a, b = a.strip(), b.strip()
    return a.casefold() == b.casefold() if ignore_case else a == b


def _needs_reference(rule: RegexRule | ExactRule | LengthRule) -> bool:
    if isinstance(rule, RegexRule):
        return rule.compare == "reference"
    return isinstance(rule, ExactRule) and rule.target is None


class RulesSpec(Spec):
    name: Literal["rules"] = "rules"
    rules: list[Rule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_columns(cls, rules: list) -> list:
        seen: set[str] = set()
        for rule in rules:
            if rule.column in seen:
                raise ValueError(f"duplicate column {rule.column!r}")
            seen.add(rule.column)
        return rules


class RulesScorer:
    """One column per rule; every value is a float."""

    name = "rules"

    def __init__(self, spec: RulesSpec):
        self.spec = spec

    def score(
        self, prompts: list[str], responses: list[str], references: list[str] | None = None
    ) -> dict[str, list[float]]:
        if references is not None and len(references) != len(responses):
            raise ValueError(f"rules: {len(responses)} responses but {len(references)} references")
        out: dict[str, list[float]] = {}
        for i, rule in enumerate(self.spec.rules):
            if references is None and _needs_reference(rule):
                raise ConfigError(
                    f"scorers.rules[{i}] ({rule.column}): compares with references, but the run has "
                    f"none (set prompts.reference_column or give the rule a target)"
                )
            refs = references if references is not None else [None] * len(responses)
            out[rule.column] = [rule.apply(r, ref) for r, ref in zip(responses, refs)]
        return out
