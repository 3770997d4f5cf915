"""The sweep spine: spec validation, the evaluator without Ray, and the real CLI on Ray Tune."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from raysweep.cli import main
from raysweep.config import ConfigError, validate
from raysweep.demo.task import split_triples
from raysweep.prompts import load_prompts
from raysweep.results import read_table, trial_key
from raysweep.sweep.evaluator import Evaluator
from raysweep.sweep.spec import SweepSpec


def _config(models: dict[str, Path], prompts: Path, out: Path | str, **extra) -> dict:
    config = {
        "name": "tiny",
        "output_dir": str(out),
        "recipe": {"method": "expo", "models": {k: str(v) for k, v in models.items()}, "alpha": 0.0},
        "search": {"grid": {"alpha": [0.0, 1.0]}, "metric": "task_reward"},
        "prompts": {"path": str(prompts), "id_column": "id"},
        "generation": {"sampling": {"max_new_tokens": 8, "temperature": 0.7, "seed": 3}},
        "scorers": [
            {"name": "demo_task"},
            {"name": "rules", "rules": [{"column": "words", "kind": "length"}]},
        ],
        "resources": {"cpus_per_trial": 1},
    }
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": t.prompt} for i, t in enumerate(split_triples()[1][:6])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_grid_value_of_wrong_type_names_its_position(tiny_llama_pair, prompts_file, tmp_path):
    config = _config(tiny_llama_pair, prompts_file, tmp_path)
    config["search"]["grid"]["alpha"] = [0.0, "lots"]
    with pytest.raises(ConfigError, match=r"search\.grid\.alpha\[1\]"):
        validate(SweepSpec, config, "sweep.yaml")
    config["search"]["grid"] = {"alhpa": [1.0]}
    with pytest.raises(ConfigError, match=r"search\.grid\.alhpa: not a searchable field"):
        validate(SweepSpec, config, "sweep.yaml")


def test_reference_source_must_be_a_recipe_role(tiny_llama_pair, prompts_file, tmp_path):
    config = _config(tiny_llama_pair, prompts_file, tmp_path, references={"source": "base"})
    with pytest.raises(ConfigError, match="references.source: 'base' is not one of"):
        validate(SweepSpec, config, "sweep.yaml")


def test_grid_values_are_normalized_so_equal_configs_share_a_key(
    tiny_llama_pair, prompts_file, tmp_path
):
    config = _config(tiny_llama_pair, prompts_file, tmp_path)
    config["search"]["grid"] = {"alpha": [1, 1.0, 0.5]}
    params = validate(SweepSpec, config, "sweep.yaml").trial_params()
    assert [trial_key(p) for p in params][0] == trial_key(params[1])
    assert params[0] == {"alpha": 1.0}


def test_trial_params_cover_the_grid(tiny_llama_pair, prompts_file, tmp_path):
    config = _config(tiny_llama_pair, prompts_file, tmp_path)
    config["search"]["grid"] = {"alpha": [0.0, 0.5], "block_alphas": [[0.1, 0.2], [0.3, 0.4]]}
    spec = validate(SweepSpec, config, "sweep.yaml")
    assert len(spec.trial_params()) == 4
    assert {"alpha": 0.5, "block_alphas": [0.3, 0.4]} in spec.trial_params()


def test_evaluator_remerges_in_place_and_scores(tiny_llama_pair, prompts_file, tmp_path):
    spec = validate(SweepSpec, _config(tiny_llama_pair, prompts_file, tmp_path, rungs=[2, 6]),
                    "sweep.yaml")
    evaluator = Evaluator(spec, load_prompts(spec.prompts))
    sft = load_file(tiny_llama_pair["sft"] / "model.safetensors")
    aligned = load_file(tiny_llama_pair["aligned"] / "model.safetensors")
    live = evaluator.backend.weight_targets()
    name = "model.layers.1.mlp.down_proj.weight"
    for alpha in (1.0, 0.0, 0.5):
        evaluator.set_params({"alpha": alpha})
        expected = ((1 + alpha) * aligned[name].float() - alpha * sft[name].float()).to(live[name].dtype)
        assert torch.equal(live[name], expected)
    first = evaluator.evaluate_rung(0)
    second = evaluator.evaluate_rung(1)
    assert [len(first.samples), len(second.samples)] == [2, 4]
    assert not first.done and second.done
    assert second.metrics["num_samples"] == 6.0  # metrics are cumulative over rungs
    for key in ("task_reward", "task_reward_ci_low", "words", "response_tokens", "merge_s"):
        assert key in second.metrics
    assert second.metrics["task_reward_ci_low"] <= second.metrics["task_reward"]
    assert second.samples[0]["prompt_id"] == "p2"
    # same seed and weights -> same responses: the sweep's comparisons across alphas are paired
    evaluator.set_params({"alpha": 0.5})
    again = evaluator.evaluate_rung(0)
    assert [s["response"] for s in again.samples] == [s["response"] for s in first.samples]
    evaluator.close()


@pytest.mark.slow
def test_cli_sweep_end_to_end_on_ray_tune(
    ray_session, tiny_llama_pair, prompts_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a relative output_dir is the driver's, not the trial actor's
    config = _config(tiny_llama_pair, prompts_file, "runs", rungs=[3, 6])
    assert main(["sweep", str(_write(tmp_path, config)), "search.grid.alpha=[0.0, 0.5, 1.0]"]) == 0
    run = str(tmp_path / "runs" / "tiny")
    trials = read_table(run, "trials").to_pylist()
    assert len(trials) == 6  # 3 trials x 2 rungs, each written exactly once
    assert {r["status"] for r in trials} == {"ok"}
    assert {r["seed"] for r in trials} == {3}
    assert sorted({r["param_alpha"] for r in trials}) == [0.0, 0.5, 1.0]
    # one long-lived actor served every config (reuse_actors): same process, config index grows
    assert len({r["actor_pid"] for r in trials}) == 1
    assert max(r["actor_config_index"] for r in trials) == 3
    samples = read_table(run, "samples").to_pylist()
    assert len(samples) == 18 and {s["seed"] for s in samples} == {3}
    assert all(isinstance(s["response"], str) for s in samples)
    best = json.loads((tmp_path / "runs" / "tiny" / "best.json").read_text())
    assert best["task_reward"] == max(r["task_reward"] for r in trials if r["rung"] == 1)
    out = capsys.readouterr().out
    assert "task_reward" in out and "alpha" in out
    # a re-run of the same config overwrites its rows instead of duplicating them
    assert main(["sweep", str(_write(tmp_path, config)), "search.grid.alpha=[0.0, 0.5, 1]"]) == 0
    assert len(read_table(run, "trials").to_pylist()) == 6
    # another config may not mix into this run's table, unless --force replaces the run
    capsys.readouterr()
    assert main(["sweep", str(_write(tmp_path, config)), "search.grid.alpha=[0.5]"]) == 2
    assert "holds a run of a different config" in capsys.readouterr().err
    assert main(["sweep", str(_write(tmp_path, config)), "search.grid.alpha=[0.5]", "--force"]) == 0
    assert sorted(r["param_alpha"] for r in read_table(run, "trials").to_pylist()) == [0.5, 0.5]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["recipe"].update(alhpa=0.5), "recipe.expo.alhpa: unknown key"),
        (lambda c: c["recipe"].update(alpha="big"), "recipe.expo.alpha"),
        (lambda c: c["recipe"]["models"].update(sft="/nonexistent/sft"),
         "recipe.models.sft: model folder not found: /nonexistent/sft"),
        (lambda c: c.update(scorers=[{"name": "bleu"}]), "bleu"),
        (lambda c: c["search"].update(grid={"block_alphas": [[0.1, 0.2, 0.3]]}),
         "search.grid {'block_alphas': [0.1, 0.2, 0.3]}"),  # 3 blocks, 2 layers: caught before Ray
    ],
)
def test_cli_bad_config_exits_2_with_one_line_and_writes_nothing(
    change, message, tiny_llama_pair, prompts_file, tmp_path, capsys
):
    config = _config(tiny_llama_pair, prompts_file, tmp_path / "runs")
    change(config)
    assert main(["sweep", str(_write(tmp_path, config))]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_summary_of_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 2
    assert "no spec.json" in capsys.readouterr().err
