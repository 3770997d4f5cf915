"""vLLM in-place weight swap (what a sweep trial pays) vs an engine restart (what it would pay
without one), same model, side by side in one run.

    python benchmarks/vllm_swap_vs_restart.py [--k 3] [--hidden 512] [--layers 4] [--multiprocessing]

Swap = `commit_weights()`: pack the staging tensors, `collective_rpc` into the running engine
(`reload_weights`), `reset_prefix_cache()`. Restart = close the backend and start a new one on the
same folder (vLLM engine start + staging load). The restart side is flattered: a real
restart-per-trial sweep would also write the merged checkpoint to disk first. The model is a random
Llama built here (offline; weights irrelevant to timing); between swaps the staging tensors are
overwritten with alternating weight sets (untimed) so each swap carries new values, and a short
greedy generate after every swap/restart (untimed) checks the engine still answers.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_model(out_dir: Path, hidden: int, layers: int) -> Path:
    from transformers import LlamaForCausalLM

    from raysweep.demo.training import build_tokenizer, llama_config

    corpus = [f"Topic: {t} | Count: {n}\nAnswer: good {t}, bright lamp." for t in "abcdefgh" for n in range(9)]
    tok = build_tokenizer(corpus * 4, out_dir)
    config = llama_config(
        len(tok), hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, head_dim=64,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=3, help="swaps and restarts each")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--multiprocessing", action="store_true", help="engine core in its own process")
    parser.add_argument("--enforce-eager", action="store_true")
    args = parser.parse_args()

    from raysweep.generate.base import SamplingSpec
    from raysweep.generate.registry import make_backend
    from raysweep.generate.spec import GenerationSpec

    spec = GenerationSpec(
        backend="vllm", dtype=args.dtype, kv_cache_memory_bytes=256 << 20,
        multiprocessing=args.multiprocessing, enforce_eager=args.enforce_eager,
    )
    probe = SamplingSpec(temperature=0.0, max_new_tokens=8, use_chat_template=False)
    prompts = ["Topic: a | Count: 3\nAnswer:"]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp), args.hidden, args.layers)

        t = time.perf_counter()
        backend = make_backend(spec, model_dir)
        first_start = time.perf_counter() - t
        targets = backend.weight_targets()
        n_params = sum(v.numel() for v in targets.values())
        weight_sets = [{k: v.clone() for k, v in targets.items()}]
        weight_sets.append({k: v * 1.5 for k, v in weight_sets[0].items()})
        outputs = set()
        swaps = []
        for i in range(args.k):
            for name, tensor in weight_sets[(i + 1) % 2].items():
                targets[name].copy_(tensor)
            t = time.perf_counter()
            backend.commit_weights()
            swaps.append(time.perf_counter() - t)
            outputs.add(tuple(backend.generate(prompts, probe)[0].token_ids))

        restarts = []
        for _ in range(args.k):
            t = time.perf_counter()
            backend.close()
            backend = make_backend(spec, model_dir)
            restarts.append(time.perf_counter() - t)
            assert backend.generate(prompts, probe)[0].num_tokens > 0
        backend.close()

    mean_swap, mean_restart = statistics.mean(swaps), statistics.mean(restarts)
    mode = "multiprocess" if args.multiprocessing else "in-process"
    eager = "eager" if args.enforce_eager else "default compilation"
    print(f"model: random Llama, {n_params / 1e6:.1f}M params, {args.dtype}; vLLM {mode} engine, {eager}")
    print(f"first engine start      {first_start:8.3f} s")
    print(f"swap    (k={args.k}) mean  {mean_swap:8.3f} s   each: {', '.join(f'{s:.3f}' for s in swaps)}")
    print(f"restart (k={args.k}) mean  {mean_restart:8.3f} s   each: {', '.join(f'{s:.3f}' for s in restarts)}")
    print(f"restart / swap          {mean_restart / mean_swap:8.1f}x")
    print(f"distinct greedy outputs after swaps: {len(outputs)} (2 weight sets alternate)")


if __name__ == "__main__":
    main()
