"""The evaluator a sweep trial runs in: sources and engine loaded once, re-merged in place per config.

Plain Python (no Ray): the Tune trainable in sweep/trainable.py wraps it, and tests drive it directly.

    ev = Evaluator(spec, prompts)          # opens sources, starts the engine, builds scorers: once
    ev.set_params({"alpha": 0.5})          # one pass over the weights + the engine's weight update
    result = ev.evaluate_rung(0)           # generate + score the rung's prompts
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysweep.config import ConfigError
from raysweep.generate.base import Generation
from raysweep.generate.registry import make_backend
from raysweep.merge.coefficients import CoefficientTable, all_groups
from raysweep.merge.engine import InPlaceMerger
from raysweep.merge.recipes import config_source, recipe_sources
from raysweep.prompts import PromptSet
from raysweep.score.registry import make_scorer
from raysweep.stats import bootstrap_ci
from raysweep.sweep.spec import SweepSpec, compile_trial


@dataclass
class RungResult:
    metrics: dict[str, float]  # cumulative over rungs 0..k: means, CIs, lengths, timings
    samples: list[dict[str, Any]]  # this rung's new (prompt, sample) rows
    done: bool


@dataclass
class _Accumulated:
    scores: dict[str, list[float]] = field(default_factory=dict)
    prompt_index: list[int] = field(default_factory=list)  # of each sample, for per-prompt CIs
    tokens: list[int] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)
    truncated_prompts: int = 0


class Evaluator:
    def __init__(self, spec: SweepSpec, prompts: PromptSet):
        self.spec = spec
        self.prompts = prompts
        models = recipe_sources(spec.recipe)
        self.merger = InPlaceMerger(models)
        model_dir = Path(models[config_source(spec.recipe)])
        self.backend = make_backend(spec.generation, model_dir)
        self.targets = self.backend.weight_targets()
        scorers = [make_scorer(s) for s in spec.scorers]
        self.sample_scorers = [s for s in scorers if hasattr(s, "score")]
        self.benchmarks = [s for s in scorers if hasattr(s, "evaluate")]
        if self.benchmarks and not hasattr(self.backend, "model"):
            raise ConfigError(
                f"scorers: {self.benchmarks[0].name} evaluates an in-memory model; "
                f"generation.backend {spec.generation.backend!r} has none (use transformers)"
            )
        bounds = spec.rungs or [len(prompts.prompts)]
        self.rung_bounds = list(zip([0, *bounds[:-1]], bounds))
        self.references = self._references()
        self.params: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self._acc = _Accumulated()

    def _references(self) -> list[str] | None:
        """Reference responses, one per prompt: generated once by a source model, or from the set."""
        if self.spec.references is None:
            return self.prompts.references
        sources = tuple(self.merger.roles)
        role = self.spec.references.source
        one_hot = tuple(1.0 if s == role else 0.0 for s in sources)
        groups = all_groups(self.merger.num_layers)
        self.merger.apply(CoefficientTable(sources, {g: one_hot for g in groups}), self.targets)
        self.backend.commit_weights()
        sampling = self.spec.generation.sampling.model_copy(update={"n": 1})
        return [g.text for g in self.backend.generate(self.prompts.prompts, sampling)]

    def set_params(self, params: dict[str, Any]) -> None:
        """Merge the trial's weights in place and make them live; resets per-trial accumulators."""
        table = compile_trial(self.spec, params, self.merger.num_layers)
        t0 = time.perf_counter()
        self.merger.apply(table, self.targets)
        t1 = time.perf_counter()
        self.backend.commit_weights()
        t2 = time.perf_counter()
        self.params = dict(params)
        self.timings = {"merge_s": t1 - t0, "load_s": t2 - t1, "generate_s": 0.0, "score_s": 0.0}
        self._acc = _Accumulated()

    def evaluate_rung(self, rung: int) -> RungResult:
        start, stop = self.rung_bounds[rung]
        prompts = self.prompts.prompts[start:stop]
        sampling = self.spec.generation.sampling
        t0 = time.perf_counter()
        generations = self.backend.generate(prompts, sampling)
        t1 = time.perf_counter()
        prompt_of = [prompts[g.prompt_index] for g in generations]
        responses = [g.text for g in generations]
        refs = None
        if self.references is not None:
            refs = [self.references[start + g.prompt_index] for g in generations]
        columns: dict[str, list[float]] = {}
        for scorer in self.sample_scorers:
            columns.update(scorer.score(prompt_of, responses, references=refs))
        done = rung == len(self.rung_bounds) - 1
        benchmark_metrics: dict[str, float] = {}
        if done:
            for bench in self.benchmarks:
                benchmark_metrics.update(bench.evaluate(self.backend.model, self.backend.tokenizer))
        t2 = time.perf_counter()
        self.timings["generate_s"] += t1 - t0
        self.timings["score_s"] += t2 - t1
        samples = self._sample_rows(generations, start, columns, rung)
        self._accumulate(generations, columns, start)
        metrics = {**self._summary(), **benchmark_metrics, **self.timings}
        metrics["num_prompts"] = stop
        return RungResult(metrics=metrics, samples=samples, done=done)

    def _sample_rows(self, generations: list[Generation], start: int,
                     columns: dict[str, list[float]], rung: int) -> list[dict[str, Any]]:
        rows = []
        for i, g in enumerate(generations):
            index = start + g.prompt_index
            rows.append({
                "prompt_id": str(self.prompts.ids[index]),
                "sample": g.sample_index,
                "rung": rung,
                "prompt": self.prompts.prompts[index],
                "response": g.text,
                "response_tokens": g.num_tokens,
                "finished": g.finished,
                "prompt_truncated": g.prompt_truncated,
                **{name: float(values[i]) for name, values in columns.items()},
            })
        return rows

    def _accumulate(self, generations: list[Generation], columns: dict[str, list[float]],
                    start: int) -> None:
        acc = self._acc
        acc.prompt_index.extend(start + g.prompt_index for g in generations)
        for name, values in columns.items():
            acc.scores.setdefault(name, []).extend(float(v) for v in values)
        acc.tokens.extend(g.num_tokens for g in generations)
        acc.finished.extend(g.finished for g in generations)
        acc.truncated_prompts += sum(g.prompt_truncated and g.sample_index == 0 for g in generations)

    def _summary(self) -> dict[str, float]:
        acc = self._acc
        seed = self.spec.generation.sampling.seed
        out: dict[str, float] = {}
        for name, values in acc.scores.items():
            # samples of one prompt are correlated: resample prompts, not samples (n > 1)
            per_prompt: dict[int, list[float]] = {}
            for index, value in zip(acc.prompt_index, values):
                per_prompt.setdefault(index, []).append(value)
            mean, low, high = bootstrap_ci([sum(v) / len(v) for v in per_prompt.values()], seed=seed)
            out.update({name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high})
        out["response_tokens"] = sum(acc.tokens) / max(len(acc.tokens), 1)
        out["finished_rate"] = sum(acc.finished) / max(len(acc.finished), 1)
        out["truncated_prompts"] = float(acc.truncated_prompts)
        out["num_samples"] = float(len(acc.tokens))
        return out

    def close(self) -> None:
        self.backend.close()
