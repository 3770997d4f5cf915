"""lm-eval benchmark on the live, in-memory model: the alignment tax of a merge, measured offline.

    - {name: lmeval, include_path: raysweep/demo/lmeval, tasks: [demo_facts], limit: 100, batch_size: 16}

Runs the lm-evaluation-harness in-process: `HFLM(pretrained=<the live model>, tokenizer=...)`
wraps the very model the generation backend samples from (weights merged in place, no checkpoint
written), and `TaskManager(include_path=..., include_defaults=False)` indexes only the local task
YAMLs under `include_path` (fast, and no built-in task can reach for a hub dataset). Data files
named by those YAMLs must be local; HF_DATASETS_OFFLINE is set while the harness runs.

Returns {"lmeval/<task>/<metric>": value}, e.g. "lmeval/demo_facts/acc"; a metric under a filter
other than lm-eval's default "none" keeps it: "lmeval/<task>/exact_match_strict".
"""
from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field

from raysweep.config import ConfigError, Spec


class LMEvalSpec(Spec):
    name: Literal["lmeval"] = "lmeval"
    include_path: str  # folder of lm-eval task YAMLs (searched recursively)
    tasks: list[str] = Field(min_length=1)  # task (or group) names defined under include_path
    limit: float | None = Field(default=None, gt=0)  # items per task; < 1 is a fraction
    batch_size: int = Field(default=8, ge=1)
    num_fewshot: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=2)  # None: from the model config
    bootstrap_iters: int = Field(default=0, ge=0)  # lm-eval's stderr bootstrap; 0 skips it
    seed: int = 0


@contextmanager
def _offline() -> Iterator[None]:
    keys = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_NOT_METRICS = {"alias", "sample_len", "samples"}  # bookkeeping entries of lm-eval's results


def metric_key(task: str, metric: str) -> str:
    """lm-eval's "acc,none" -> "lmeval/<task>/acc"; "exact_match,strict" -> ".../exact_match_strict"."""
    name, _, filt = metric.partition(",")
    return f"lmeval/{task}/{name}" if filt in ("", "none") else f"lmeval/{task}/{name}_{filt}"


def flatten_results(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Numeric metrics of lm-eval's `results` block (stderr included when computed)."""
    out: dict[str, float] = {}
    for task, metrics in results.items():
        for metric, value in metrics.items():
            if metric in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            out[metric_key(task, metric)] = float(value)
    return out


class LMEvalBenchmark:
    """A ModelBenchmark: `evaluate(model, tokenizer)` on the live model returns scalar metrics."""

    name = "lmeval"

    def __init__(self, spec: LMEvalSpec):
        self.spec = spec
        folder = Path(spec.include_path)
        if not folder.is_dir():
            raise ConfigError(f"lmeval.include_path: folder not found: {folder}")
        if not any(folder.rglob("*.yaml")):
            raise ConfigError(f"lmeval.include_path: {folder}: no task YAML files")
        self._task_manager = None

    def task_manager(self):
        """lm-eval's TaskManager over `include_path` only; unknown task names list the known ones."""
        if self._task_manager is None:
            try:
                from lm_eval.tasks import TaskManager
            except ImportError as err:
                raise ConfigError(
                    f"scorers.lmeval: lm-eval is not importable ({err}); pip install 'raysweep[lmeval]'"
                ) from None
            manager = TaskManager(include_path=self.spec.include_path, include_defaults=False)
            known = set(manager.all_tasks)
            unknown = [t for t in self.spec.tasks if t not in known]
            if unknown:
                raise ConfigError(
                    f"lmeval.tasks: {unknown} not defined under {self.spec.include_path}; "
                    f"known: {', '.join(sorted(known)) or '(none)'}"
                )
            self._task_manager = manager
        return self._task_manager

    def evaluate(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """Run the tasks on `model` (a transformers causal LM, in memory) and return its metrics."""
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        spec = self.spec
        manager = self.task_manager()
        was_training = model.training
        # HFLM may set a pad token or flip padding sides: keep the caller's tokenizer untouched.
        lm = HFLM(
            pretrained=model,
            tokenizer=copy.deepcopy(tokenizer),
            batch_size=spec.batch_size,
            max_length=spec.max_length,
        )
        limit = int(spec.limit) if spec.limit is not None and spec.limit >= 1 else spec.limit
        try:
            with _offline():
                out = simple_evaluate(
                    model=lm,
                    tasks=list(spec.tasks),
                    num_fewshot=spec.num_fewshot,
                    limit=limit,
                    task_manager=manager,
                    bootstrap_iters=spec.bootstrap_iters,
                    log_samples=False,
                    random_seed=spec.seed,
                    numpy_random_seed=spec.seed,
                    torch_random_seed=spec.seed,
                    fewshot_random_seed=spec.seed,
                )
        finally:
            model.train(was_training)
        if out is None:  # non-zero ranks of a distributed run
            return {}
        return flatten_results(out["results"])
