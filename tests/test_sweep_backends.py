"""The sweep evaluator with the heavy backends chosen by config: vLLM generation, PairRM against
reference responses generated once by the SFT source, and lm-eval on the live merged model."""
from __future__ import annotations

import json

import pytest

from raysweep.config import validate
from raysweep.prompts import load_prompts
from raysweep.sweep.evaluator import Evaluator
from raysweep.sweep.spec import SweepSpec
from test_generate_hf import build_lively_pair
from test_score_pairrm import build_tiny_pairrm
from test_sweep import _config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lively(tmp_path_factory, tiny_tokenizer_dir):
    return build_lively_pair(tmp_path_factory.mktemp("lively_sweep"), tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    from raysweep.demo.task import split_triples

    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": t.prompt} for i, t in enumerate(split_triples()[1][:4])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.vllm
def test_vllm_backend_with_pairrm_against_sft_references(lively, prompts_file, tmp_path):
    pytest.importorskip("vllm")
    pairrm = build_tiny_pairrm(tmp_path / "pairrm")
    config = _config(lively, prompts_file, tmp_path, references={"source": "sft"})
    config["generation"] = {
        "backend": "vllm", "dtype": "float32", "enforce_eager": True, "multiprocessing": False,
        "kv_cache_memory_bytes": 64 << 20,
        "sampling": {"temperature": 0.0, "max_new_tokens": 8, "use_chat_template": False},
    }
    config["scorers"] = [{"name": "pairrm", "path": str(pairrm)}, {"name": "demo_task"}]
    spec = validate(SweepSpec, config, "sweep.yaml")
    evaluator = Evaluator(spec, load_prompts(spec.prompts))
    try:
        assert len(evaluator.references) == 4
        # alpha 0 merges to the aligned model; sft itself is the reference: PairRM scores the pair
        evaluator.set_params({"alpha": -1.0})  # (1 - 1) aligned + 1 sft == sft exactly
        same = evaluator.evaluate_rung(0)
        assert [s["response"] for s in same.samples] == evaluator.references
        assert same.metrics["pairrm_win"] == 0.5  # identical responses tie, both orders compared
        evaluator.set_params({"alpha": 1.0})
        moved = evaluator.evaluate_rung(0)
        assert {"pairrm_win", "pairrm_logit", "task_reward"} <= set(moved.metrics)
        assert moved.metrics["load_s"] > 0.0  # weights went through the engine's reload path
    finally:
        evaluator.close()


def test_lmeval_benchmark_on_the_live_merged_model(lively, prompts_file, tmp_path):
    pytest.importorskip("lm_eval")
    from raysweep.demo.task import LMEVAL_DIR

    config = _config(lively, prompts_file, tmp_path)
    config["scorers"] = [
        {"name": "demo_task"},
        {"name": "lmeval", "include_path": str(LMEVAL_DIR), "tasks": ["demo_facts"], "limit": 8},
    ]
    spec = validate(SweepSpec, config, "sweep.yaml")
    evaluator = Evaluator(spec, load_prompts(spec.prompts))
    try:
        evaluator.set_params({"alpha": 0.0})
        result = evaluator.evaluate_rung(0)
        accuracy = [v for k, v in result.metrics.items() if k.startswith("lmeval/demo_facts/acc")]
        assert accuracy and 0.0 <= accuracy[0] <= 1.0
    finally:
        evaluator.close()
