"""The demo world's programmatic scorer: task_reward and valid share per (prompt, response)."""
from __future__ import annotations

from typing import Literal

from raysweep.config import Spec
from raysweep.demo.task import task_reward


class DemoTaskScorerSpec(Spec):
    """Config of the demo task scorer (no knobs: the reward is defined in raysweep.demo.task)."""

    name: Literal["demo_task"] = "demo_task"


class DemoTaskScorer:
    """SampleScorer: {"task_reward": [0..1], "task_valid": [0..1]} per response.

    Prompts must be demo task prompts (`Topic: T | Count: n | Start: s`), else ConfigError.
    """

    name = "demo_task"

    def __init__(self, spec: DemoTaskScorerSpec | None = None) -> None:
        self.spec = spec or DemoTaskScorerSpec()

    def score(
        self, prompts: list[str], responses: list[str], references: list[str] | None = None
    ) -> dict[str, list[float]]:
        if len(prompts) != len(responses):
            raise ValueError(f"demo_task: {len(prompts)} prompts but {len(responses)} responses")
        pairs = [task_reward(p, r) for p, r in zip(prompts, responses)]
        return {"task_reward": [r for r, _ in pairs], "task_valid": [v for _, v in pairs]}
