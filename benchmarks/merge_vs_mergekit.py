"""`raysweep merge` vs mergekit on the same ExPO merge of a random ~150M-parameter bf16 Llama pair.

    python benchmarks/merge_vs_mergekit.py [--alpha 0.5] [--repeats 3]

mergekit runs from its own venv, benchmarks/.venv-mergekit (created on first run: a plain venv,
the CPU torch wheel pinned first so mergekit's `torch>=2` cannot pull a CUDA build, then
mergekit==0.1.5). ExPO in mergekit is task_arithmetic with base_model sft and the aligned model at
weight 1 + alpha: sft + (1 + alpha)(aligned - sft) = (1 + alpha) aligned - alpha sft. It runs twice:
compute dtype bfloat16 (what a bf16 config gets) and float32 with out_dtype bfloat16.

Each merge runs in a fresh process under a small meter process (wall time, peak RSS of that
child alone); runs alternate and the median wall time is reported. Element differences are
counted against the exact reference computed here: fp32 (1 + alpha) aligned + (-alpha) sft,
rounded once to bf16.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
VENV = HERE / ".venv-mergekit"
MERGEKIT_VERSION = "0.1.5"
TORCH_PIN = "torch==2.13.0+cpu"
SEED = 1234
# ~148M parameters: embed + lm_head 2 x 24.6M, 14 layers x 7.1M.
SHAPE = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=14,
             num_attention_heads=12, num_key_value_heads=12, tie_word_embeddings=False)
METER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode\n"
    "wall = time.perf_counter() - t\n"
    "print(json.dumps({'rc': rc, 'wall_s': wall,"
    " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
)


def build_pair(root: Path = OUT / "pair") -> dict[str, Path]:
    """sft: a seeded random Llama; aligned: sft + N(0, 0.002) per weight (fine-tune-sized deltas)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    marker = root / "pair.json"
    spec = {"seed": SEED, **SHAPE}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return {"sft": root / "sft", "aligned": root / "aligned"}
    shutil.rmtree(root, ignore_errors=True)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE))
    model.to(torch.bfloat16).save_pretrained(root / "sft")
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen, dtype=param.dtype), alpha=0.002)
    model.to(torch.bfloat16).save_pretrained(root / "aligned")
    marker.write_text(json.dumps(spec))
    params = sum(p.numel() for p in model.parameters())
    print(f"built pair: {params / 1e6:.1f}M parameters, bf16, seed {SEED}")
    return {"sft": root / "sft", "aligned": root / "aligned"}


def ensure_mergekit() -> Path:
    """benchmarks/.venv-mergekit/bin/mergekit-yaml, installing it on first use (never globally)."""
    exe = VENV / "bin" / "mergekit-yaml"
    if exe.is_file():
        return exe
    pip = VENV / "bin" / "pip"
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(pip), "install", "-q", TORCH_PIN], check=True)
    subprocess.run([str(pip), "install", "-q", f"mergekit=={MERGEKIT_VERSION}"], check=True)
    probe = subprocess.run([str(VENV / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if "+cpu" not in probe:
        raise SystemExit(f"mergekit venv got torch {probe}; expected the CPU build ({TORCH_PIN})")
    return exe


def metered(cmd: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", METER, *cmd], capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{cmd[0]} failed (rc {result['rc']}):\n{proc.stderr[-3000:]}")
    return result


def reference_diffs(out: Path, pair: dict[str, Path], alpha: float) -> tuple[int, int]:
    """(elements differing from the exact reference, total elements) in merged folder `out`."""
    from raysweep.checkpoints import open_checkpoint

    sft, aligned, merged = (open_checkpoint(p) for p in (pair["sft"], pair["aligned"], out))
    differ = total = 0
    for name in aligned.names:
        expect = ((1.0 + alpha) * aligned.tensor(name).float()
                  + (-alpha) * sft.tensor(name).float()).to(torch.bfloat16)
        got = merged.tensor(name)
        assert got.dtype == torch.bfloat16 and got.shape == expect.shape, name
        differ += int((got.view(torch.int16) != expect.view(torch.int16)).sum())
        total += expect.numel()
    return differ, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    pair = build_pair()
    mergekit = ensure_mergekit()
    recipe = OUT / "expo.yaml"
    recipe.write_text(yaml.safe_dump({"method": "expo", "alpha": args.alpha,
                                      "models": {k: str(v) for k, v in pair.items()}}))
    runs: dict[str, list] = {}
    commands = {"raysweep": [sys.executable, "-m", "raysweep.cli", "merge", str(recipe),
                             "--out", str(OUT / "raysweep"), "--force"]}
    for compute in ("bfloat16", "float32"):
        config = OUT / f"mergekit-{compute}.yaml"
        config.write_text(yaml.safe_dump({
            "merge_method": "task_arithmetic", "base_model": str(pair["sft"]),
            "models": [{"model": str(pair["aligned"]), "parameters": {"weight": 1.0 + args.alpha}}],
            "dtype": compute, "out_dtype": "bfloat16",
        }))
        commands[f"mergekit ({compute} compute)"] = [
            str(mergekit), str(config), str(OUT / f"mergekit-{compute}"), "--allow-crimes"]
    for _ in range(args.repeats):
        for label, cmd in commands.items():
            if label != "raysweep":
                shutil.rmtree(cmd[2], ignore_errors=True)
            runs.setdefault(label, []).append(metered(cmd))
    outs = {"raysweep": OUT / "raysweep", **{f"mergekit ({c} compute)": OUT / f"mergekit-{c}"
                                              for c in ("bfloat16", "float32")}}
    ours = statistics.median(r["wall_s"] for r in runs["raysweep"])
    ours_rss = max(r["peak_rss_mb"] for r in runs["raysweep"])
    print(f"\nExPO alpha={args.alpha} on a {SHAPE['num_hidden_layers']}-layer bf16 Llama pair "
          f"(~150M params), {args.repeats} alternating runs, torch threads {torch.get_num_threads()}")
    print(f"{'tool':28s} {'wall s (median)':>16s} {'peak RSS MB':>12s} {'differing elements':>24s}")
    for label, results in runs.items():
        wall = statistics.median(r["wall_s"] for r in results)
        rss = max(r["peak_rss_mb"] for r in results)
        differ, total = reference_diffs(outs[label], pair, args.alpha)
        print(f"{label:28s} {wall:16.2f} {rss:12.0f} {differ:>12d} ({100 * differ / total:6.3f}%)")
    for label, results in runs.items():
        if label != "raysweep":
            wall = statistics.median(r["wall_s"] for r in results)
            rss = max(r["peak_rss_mb"] for r in results)
            print(f"{label}: raysweep is {wall / ours:.2f}x faster, peak RSS ratio raysweep/mergekit "
                  f"{ours_rss / rss:.2f}")


if __name__ == "__main__":
    main()
