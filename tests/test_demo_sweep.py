"""README's demo, for real: `raysweep sweep configs/demo.yaml` on the demo world (built on first use,
~5 min on 2 cores, then cached) must show ExPO's effect, with either generation backend."""
from __future__ import annotations

from pathlib import Path

import pytest

from raysweep.cli import main
from raysweep.sweep.run import summarize_run

pytestmark = pytest.mark.slow
DEMO = str(Path(__file__).parent.parent / "configs" / "demo.yaml")
VLLM = ["generation.backend=vllm", "generation.enforce_eager=true",
        "generation.multiprocessing=false", "generation.kv_cache_memory_bytes=268435456"]


def _sweep(tmp_path: Path, name: str, *overrides: str) -> dict[float, dict]:
    assert main(["sweep", DEMO, f"output_dir={tmp_path}", f"name={name}", *overrides]) == 0
    rows = summarize_run(str(tmp_path / name), "task_reward")
    assert [r["status"] for r in rows] == ["ok"] * 6
    return {r["param_alpha"]: r for r in rows}


@pytest.fixture(scope="module")
def transformers_run(ray_session, tmp_path_factory):
    return _sweep(tmp_path_factory.mktemp("demo"), "demo")


def test_demo_alpha_curve_rises_then_collapses(transformers_run):
    by_alpha = transformers_run
    best = max(by_alpha, key=lambda a: by_alpha[a]["task_reward"])
    assert best > 0.0
    assert by_alpha[best]["task_reward"] > by_alpha[0.0]["task_reward"]
    assert by_alpha[4.0]["task_reward"] < by_alpha[0.0]["task_reward"]
    assert by_alpha[4.0]["task_valid"] < by_alpha[0.0]["task_valid"]  # collapse = lost task skill


@pytest.mark.vllm
def test_demo_on_vllm_agrees_with_transformers(transformers_run, tmp_path):
    pytest.importorskip("vllm")
    by_alpha = _sweep(tmp_path, "demo-vllm", *VLLM)
    best = max(by_alpha, key=lambda a: by_alpha[a]["task_reward"])
    assert best > 0.0 and by_alpha[4.0]["task_reward"] < by_alpha[0.0]["task_reward"]
    for alpha in (0.0, 4.0):  # different samplers, same distribution: the 95% CIs overlap
        hf, vl = transformers_run[alpha], by_alpha[alpha]
        assert vl["task_reward_ci_low"] <= hf["task_reward_ci_high"]
        assert hf["task_reward_ci_low"] <= vl["task_reward_ci_high"]
