"""Does the demo world show ExPO's effect? Reward against alpha, measured in one run.

    python benchmarks/demo_alpha_curve.py [--root DIR] [--seed 0] [--alphas 0,0.25,0.5,1,2,4]

theta = aligned + alpha (aligned - sft), merged in fp32 on state dicts (tied weights once); every
alpha samples the 216 held-out prompts at T=0.7 with the same torch seed, 48 new tokens max.
Prints per alpha: mean task_reward with a bootstrap 95% CI, valid share, finished share, mean
response length (tokens), mean reward-model score, demo_facts accuracy (the lm-eval tax task,
scored here by direct log-likelihood), and the RM/task_reward correlation on those samples.
Expected shape: reward rises for some alpha > 0, then collapses with the task skill.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from raysweep.demo import task, training  # noqa: E402
from raysweep.demo.world import ensure_world  # noqa: E402


def bootstrap_ci(values: np.ndarray, seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@torch.no_grad()
def facts_accuracy(model, tokenizer, rows: list[dict]) -> float:
    """Share of demo_facts questions whose gold choice has the highest log-likelihood."""
    prompts, conts = [], []
    for row in rows:
        for choice in row["choices"]:
            prompts.append(row["context"])
            conts.append(" " + choice)
    ids, mask, labels = training.encode_pairs(tokenizer, prompts, conts, [False] * len(prompts))
    logp = torch.cat([
        training.sequence_logprob(model, ids[i:i + 512], mask[i:i + 512], labels[i:i + 512])
        for i in range(0, len(prompts), 512)
    ])
    k = len(rows[0]["choices"])
    picks = logp.view(len(rows), k).argmax(dim=1).tolist()
    return float(np.mean([p == row["label"] for p, row in zip(picks, rows)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--sample-seed", type=int, default=1234)
    parser.add_argument("--alphas", default="0,0.25,0.5,1,2,4")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaForCausalLM

    paths = ensure_world(args.root, args.seed)
    tokenizer = AutoTokenizer.from_pretrained(paths.aligned)
    sft = LlamaForCausalLM.from_pretrained(paths.sft, dtype=torch.float32).state_dict()
    model = LlamaForCausalLM.from_pretrained(paths.aligned, dtype=torch.float32).eval()
    aligned = {k: v.clone() for k, v in model.state_dict().items()}
    rm = AutoModelForSequenceClassification.from_pretrained(paths.reward_model, dtype=torch.float32)
    rm.eval()
    rows = [json.loads(line) for line in paths.prompts.read_text().splitlines()]
    prompts = [r["prompt"] for r in rows]
    facts = [json.loads(line) for line in task.LMEVAL_DATA.read_text().splitlines()]
    print(f"world {paths.root}  prompts {len(prompts)}  T={args.temperature}  "
          f"sample seed {args.sample_seed}")
    header = ("alpha", "reward [95% CI]", "valid", "finished", "len", "rm_score", "facts_acc",
              "rm~reward r", "sec")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    pooled_rm, pooled_reward = [], []
    for alpha in [float(a) for a in args.alphas.split(",")]:
        t0 = time.perf_counter()
        merged = {k: (1 + alpha) * aligned[k] - alpha * sft[k] for k in aligned}  # fp32
        model.load_state_dict(merged)
        outs = training.sample(model, tokenizer, prompts, n=1, temperature=args.temperature,
                               max_new_tokens=48, seed=args.sample_seed)
        scores = [task.task_reward(p, text) for p, (text, _) in zip(prompts, outs)]
        reward = np.array([s[0] for s in scores])
        valid = np.array([s[1] for s in scores])
        with torch.no_grad():
            texts = [p + t for p, (t, _) in zip(prompts, outs)]
            rm_score = training.reward_scores(rm, tokenizer, texts).numpy()
        encoded = tokenizer([t for t, _ in outs], add_special_tokens=False)["input_ids"]
        lengths = [len(x) for x in encoded]
        acc = facts_accuracy(model, tokenizer, facts)
        lo, hi = bootstrap_ci(reward)
        corr = np.corrcoef(rm_score, reward)[0, 1] if reward.std() > 0 else float("nan")
        pooled_rm += rm_score.tolist()
        pooled_reward += reward.tolist()
        print(f"| {alpha:g} | {reward.mean():.3f} [{lo:.3f}, {hi:.3f}] | {valid.mean():.3f} | "
              f"{np.mean([e for _, e in outs]):.2f} | {np.mean(lengths):.1f} | {rm_score.mean():+.3f} | "
              f"{acc:.3f} | {corr:.2f} | {time.perf_counter() - t0:.1f} |", flush=True)
    a, b = np.array(pooled_rm), np.array(pooled_reward)
    print(f"reward model vs task_reward over all samples (n={len(a)}): "
          f"pearson {np.corrcoef(a, b)[0, 1]:.3f}, spearman {spearman(a, b):.3f}")


if __name__ == "__main__":
    main()
