"""An ExPO alpha sweep: `raysweep sweep` vs mergekit + a shell loop, same evaluation, one run.

    python benchmarks/sweep_vs_loop.py [--alphas 0,0.5,1,2]

Both sides evaluate the demo world's 216 held-out prompts per alpha with the same generation
(transformers, T=0.7, seed 0, 48 new tokens) and scorers (demo_task + the reward model).
- raysweep: one `raysweep sweep configs/demo.yaml` command: Ray start, one actor that loads the sources
  and the model once, then per alpha an in-place re-merge + generate + score.
- loop: per alpha, `mergekit-yaml` (benchmarks/.venv-mergekit, see merge_vs_mergekit.py) writes the
  merged checkpoint (task_arithmetic, base sft, aligned at weight 1 + alpha, fp32), then a fresh Python
  process loads it and runs the same generation + scorers (raysweep's own components, so only the
  orchestration differs) - what a team scripts around mergekit today.
Prints wall times, the ratio, the sweep's per-trial cost once its actor is up, and each side's
per-alpha mean task_reward: a cross-check (the loop's merges round differently - base + w (aligned -
base) vs the exact (1 + a) aligned - a sft - so samples may differ slightly).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "sweep_vs_loop"
DEMO = HERE.parent / "configs" / "demo.yaml"


def evaluate_one(model_dir: str) -> dict[str, float]:
    """The loop's per-alpha evaluation, in its own process: load, generate, score (demo settings)."""
    from raysweep.config import read_yaml
    from raysweep.demo.world import resolve_demo_uri
    from raysweep.generate.registry import make_backend
    from raysweep.generate.spec import GenerationSpec
    from raysweep.prompts import PromptSetSpec, load_prompts
    from raysweep.score.registry import make_scorer

    demo = read_yaml(DEMO)
    prompts = load_prompts(PromptSetSpec(path=str(resolve_demo_uri("demo://prompts")), id_column="id"))
    backend = make_backend(GenerationSpec.model_validate(demo["generation"]), model_dir)
    gens = backend.generate(prompts.prompts, backend_sampling(demo))
    texts = [g.text for g in gens]
    scores: dict[str, list[float]] = {}
    for spec in demo["scorers"]:
        spec = {k: str(resolve_demo_uri(v)) if str(v).startswith("demo://") else v
                for k, v in spec.items()}
        scores.update(make_scorer(spec).score(prompts.prompts, texts))
    return {name: sum(v) / len(v) for name, v in scores.items()}


def backend_sampling(demo: dict):
    from raysweep.generate.base import SamplingSpec

    return SamplingSpec.model_validate(demo["generation"]["sampling"])


def run_loop(alphas: list[float], mergekit: Path) -> tuple[float, dict[float, float]]:
    from raysweep.demo.world import resolve_demo_uri

    sft, aligned = (str(resolve_demo_uri(f"demo://{r}")) for r in ("sft", "aligned"))
    means, start = {}, time.perf_counter()
    for alpha in alphas:
        config, merged = OUT / f"mergekit-{alpha}.yaml", OUT / f"merged-{alpha}"
        config.write_text(yaml.safe_dump({
            "merge_method": "task_arithmetic", "base_model": sft, "dtype": "float32",
            "models": [{"model": aligned, "parameters": {"weight": 1.0 + alpha}}],
        }))
        shutil.rmtree(merged, ignore_errors=True)
        subprocess.run([str(mergekit), str(config), str(merged), "--allow-crimes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.copy(Path(aligned) / "tokenizer.json", merged / "tokenizer.json")
        shutil.copy(Path(aligned) / "tokenizer_config.json", merged / "tokenizer_config.json")
        out = subprocess.run([sys.executable, __file__, "--eval-one", str(merged)], check=True,
                             capture_output=True, text=True).stdout
        means[alpha] = json.loads(out.strip().splitlines()[-1])["task_reward"]
    return time.perf_counter() - start, means


def run_sweep(alphas: list[float]) -> tuple[float, dict[float, float]]:
    grid = "[" + ",".join(str(a) for a in alphas) + "]"
    start = time.perf_counter()
    subprocess.run(["raysweep", "sweep", str(DEMO), f"search.grid.alpha={grid}", "name=bench",
                    f"output_dir={OUT}"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    from raysweep.sweep.run import summarize_run

    rows = summarize_run(str(OUT / "bench"), "task_reward")
    per_trial = sum(r["merge_s"] + r["load_s"] + r["generate_s"] + r["score_s"] for r in rows)
    print(f"sweep: {per_trial / len(rows):.2f} s per trial once the actor is up "
          f"(actor setup {rows[0]['actor_setup_s']:.1f} s, once)")
    return wall, {r["param_alpha"]: r["task_reward"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alphas", default="0,0.5,1,2")
    parser.add_argument("--eval-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.eval_one:
        print(json.dumps(evaluate_one(args.eval_one)))
        return
    from merge_vs_mergekit import ensure_mergekit
    from raysweep.demo.world import ensure_world

    alphas = [float(a) for a in args.alphas.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_world()
    mergekit = ensure_mergekit()
    sweep_s, sweep_means = run_sweep(alphas)
    loop_s, loop_means = run_loop(alphas, mergekit)
    print(f"{len(alphas)} alphas x 216 prompts, demo world, transformers backend, 2 CPU cores")
    print(f"{'alpha':>6} {'sweep task_reward':>18} {'loop task_reward':>17}")
    for alpha in alphas:
        print(f"{alpha:6.2f} {sweep_means[alpha]:18.3f} {loop_means[alpha]:17.3f}")
    print(f"raysweep sweep: {sweep_s:7.1f} s  ({sweep_s / len(alphas):.1f} s per alpha, Ray start incl.)")
    print(f"mergekit loop:  {loop_s:7.1f} s  ({loop_s / len(alphas):.1f} s per alpha)")
    print(f"raysweep is {loop_s / sweep_s:.2f}x faster")


if __name__ == "__main__":
    main()
