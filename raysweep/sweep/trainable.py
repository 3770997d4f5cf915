"""Ray Tune trainable: a long-lived evaluator actor, reset (not restarted) for each new config.

With `reuse_actors=True` Tune calls `reset_config` on a finished trial's actor instead of starting a
new one, so the source weights and the generation engine are loaded once per actor, never per trial.
Each `step` evaluates one prompt rung and writes that rung's rows (exactly once, keyed by config).
"""
from __future__ import annotations

import json
import os
import time
import traceback
from typing import Any

from ray import tune

from raysweep.results import table_path, trial_key, write_rows
from raysweep.sweep.evaluator import Evaluator
from raysweep.sweep.spec import SweepSpec


class SweepTrial(tune.Trainable):
    def setup(self, config: dict[str, Any], spec_json: str = "", prompts: Any = None) -> None:
        self.spec = SweepSpec.model_validate_json(spec_json)
        t0 = time.perf_counter()
        self.evaluator = Evaluator(self.spec, prompts)
        self.setup_s = time.perf_counter() - t0
        self.configs_served = 0  # > 1 proves the actor (sources + engine) was reused across trials
        self._start(config)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._start(new_config)
        return True

    def _start(self, config: dict[str, Any]) -> None:
        self.params = dict(config.get("params", {}))
        self.key = trial_key(self.params)
        self.rung = 0
        self.configs_served += 1
        self.evaluator.set_params(self.params)

    def _trial_row(self, metrics: dict[str, Any], status: str, error: str = "") -> dict[str, Any]:
        sampling = self.spec.generation.sampling
        return {
            "run": self.spec.name,
            "trial": self.key,
            "tune_trial_id": self.trial_id,
            "rung": self.rung,
            "method": self.spec.recipe.method,
            **self.params_flat(),
            "params_json": json.dumps(self.params, sort_keys=True, default=str),
            "backend": self.spec.generation.backend,
            "seed": sampling.seed,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_new_tokens": sampling.max_new_tokens,
            "actor_setup_s": self.setup_s,
            "actor_pid": os.getpid(),
            "actor_config_index": self.configs_served,
            "status": status,
            "error": error,
            "finished_at": time.time(),
            **metrics,
        }

    def step(self) -> dict[str, Any]:
        run_dir = self.spec.run_dir
        try:
            result = self.evaluator.evaluate_rung(self.rung)
        except Exception as err:
            row = self._trial_row({}, "failed", f"{type(err).__name__}: {err}")
            write_rows([row], table_path(run_dir, "trials", self.key, self.rung))
            traceback.print_exc()
            raise
        seed = self.spec.generation.sampling.seed
        samples = [{"run": self.spec.name, "trial": self.key, "seed": seed, **self.params_flat(), **s}
                   for s in result.samples]
        write_rows(samples, table_path(run_dir, "samples", self.key, self.rung))
        write_rows([self._trial_row(result.metrics, "ok")], table_path(run_dir, "trials", self.key,
                                                                       self.rung))
        report = {**result.metrics, "rung": self.rung, "trial_key": self.key, "done": result.done}
        self.rung += 1
        return report

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """A trial's state is its config and the next rung: weights are re-merged, never saved."""
        with open(os.path.join(checkpoint_dir, "trial.json"), "w") as out:
            json.dump({"params": self.params, "rung": self.rung}, out)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "trial.json")) as src:
            state = json.load(src)
        self._start({"params": state["params"]})
        self.rung = state["rung"]

    def params_flat(self) -> dict[str, Any]:
        return {f"param_{k}": v for k, v in self.params.items()}

    def cleanup(self) -> None:
        self.evaluator.close()
