"""Run a validated sweep on Ray Tune and print its summary (best config first)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import ray
from ray import tune

from raysweep.prompts import PromptSet
from raysweep.results import join, read_table, write_json
from raysweep.sweep.spec import SweepSpec
from raysweep.sweep.summary import final_rows, format_summary
from raysweep.sweep.trainable import SweepTrial


class _Progress(tune.Callback):
    """One line per finished rung, so a user sees the sweep move without Tune's full tables."""

    def __init__(self, metric: str, total: int, log: Callable[[str], None]):
        self.metric, self.total, self.log = metric, total, log
        self.finished = 0
        self.started = time.perf_counter()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        params = ", ".join(f"{k}={v}" for k, v in trial.config.get("params", {}).items())
        value = result.get(self.metric)
        shown = f"{value:.4f}" if isinstance(value, float) else "n/a"
        self.finished += bool(result.get("done"))
        self.log(
            f"[{time.perf_counter() - self.started:6.1f}s] trial {self.finished}/{self.total} "
            f"{params or '(base)'} rung {result['rung']}: {self.metric}={shown} "
            f"tokens={result.get('response_tokens', 0):.1f} merge={result.get('merge_s', 0):.3f}s "
            f"load={result.get('load_s', 0):.3f}s generate={result.get('generate_s', 0):.1f}s "
            f"score={result.get('score_s', 0):.1f}s"
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self.log(f"trial {trial.config.get('params')} FAILED (see {trial.local_path})")


def _init_ray(spec: SweepSpec) -> None:
    if ray.is_initialized():
        return
    res = spec.resources
    if res.ray_address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=res.ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=res.num_cpus, include_dashboard=False, log_to_driver=False)


def run_sweep(spec: SweepSpec, prompts: PromptSet, log: Callable[[str], None] = print) -> list[dict]:
    """Search the spec's grid with one long-lived evaluator actor per concurrent trial.

    Returns the final-rung trial rows, best first (also printed, and written to best.json).
    """
    if "://" not in spec.output_dir:  # trial actors run in their own working directories
        spec = spec.model_copy(update={"output_dir": str(Path(spec.output_dir).resolve())})
    _init_ray(spec)
    run_dir = spec.run_dir
    params = spec.trial_params()
    write_json(spec.model_dump(mode="json"), join(run_dir, "spec.json"))
    res = spec.resources
    trainable = tune.with_resources(
        tune.with_parameters(SweepTrial, spec_json=spec.model_dump_json(), prompts=prompts),
        {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"params": tune.grid_search(params)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=res.max_concurrent_trials,
            reuse_actors=res.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=run_dir,
            verbose=0,
            callbacks=[_Progress(spec.search.metric, len(params), log)],
        ),
    )
    log(f"sweep {spec.name}: {len(params)} trials over {sorted(spec.search.grid) or '(none)'}, "
        f"{len(prompts.prompts)} prompts, backend {spec.generation.backend}, writing {run_dir}")
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    rows = summarize_run(run_dir, spec.search.metric, spec.search.mode)
    if rows:
        write_json(rows[0], join(run_dir, "best.json"))
    log(format_summary(rows, spec.search.metric))
    if errors:
        print(f"{len(errors)} trial(s) failed; first: {errors[0]}", file=sys.stderr)
    return rows


def summarize_run(run_dir: str, metric: str, mode: str = "max") -> list[dict[str, Any]]:
    return final_rows(read_table(run_dir, "trials"), metric, mode)
