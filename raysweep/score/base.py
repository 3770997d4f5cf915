"""The scorer protocols.

A `SampleScorer` scores (prompt, response) pairs and returns named per-sample columns, e.g.
{"reward": [...]} or {"task_reward": [...], "task_valid": [...]}; higher is better unless the column
name says otherwise. A `ModelBenchmark` evaluates the live model itself (lm-eval) and returns
named scalars, e.g. {"lmeval/demo_facts/acc": 0.83}.
"""
from __future__ import annotations

from typing import Any, Protocol


class SampleScorer(Protocol):
    name: str

    def score(
        self, prompts: list[str], responses: list[str], references: list[str] | None = None
    ) -> dict[str, list[float]]:
        """One value per response for every returned column."""


class ModelBenchmark(Protocol):
    name: str

    def evaluate(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """Run the benchmark on an in-memory model; scalar metrics keyed by name."""
