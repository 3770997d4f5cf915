"""In-place re-merge (what every sweep trial pays) vs a plain memory copy of the same bytes.

    python benchmarks/inplace_remerge.py [--repeats 5]

Uses the ~150M-parameter bf16 Llama pair of merge_vs_mergekit.py. Targets are bf16 tensors shaped
like the model's parameters. Baseline: `target.copy_(source)` for every tensor (reads one source,
writes the target: the least any re-merge can do). Measured: InPlaceMerger.apply with an ExPO table
(reads two sources, converts to fp32, writes the target) three ways: eager chunked kernel on
memory-mapped bf16 sources, eager on preconverted fp32 copies (fp32_sources=True, 2x the sources'
memory), and the fused compiled kernel on memory-mapped bf16 sources (compile time reported apart).
Copy and fused kernel run with torch's thread count and with 1 thread (a busy machine can make
OpenMP threads much slower than one); ratios are against the faster copy.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from merge_vs_mergekit import SHAPE, build_pair

from raysweep.merge.engine import InPlaceMerger
from raysweep.merge.recipes import compile_recipe, parse_recipe


def timed(fn, repeats: int) -> float:
    fn()  # warm: pages faulted in, scratch allocated
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pair = build_pair()
    recipe = parse_recipe({"method": "expo", "alpha": 0.5,
                           "models": {k: str(v) for k, v in pair.items()}}, "bench")
    sources_ = {"aligned": pair["aligned"], "sft": pair["sft"]}
    mapped = InPlaceMerger(sources_, fused=False)
    table = compile_recipe(recipe, mapped.num_layers)
    aligned = mapped.indexes["aligned"]
    targets = {n: torch.empty(aligned.shape(n), dtype=aligned.dtype(n)) for n in mapped.names}
    sources = {n: aligned.tensor(n) for n in mapped.names}
    nbytes = sum(t.numel() * t.element_size() for t in targets.values())

    def copy() -> None:
        for name, target in targets.items():
            target.copy_(sources[name])

    rows = [(f"torch copy_, {torch.get_num_threads()} threads", timed(copy, args.repeats))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy box one thread can copy faster; compare with the best
    rows.append(("torch copy_, 1 thread", timed(copy, args.repeats)))
    torch.set_num_threads(threads)
    base = min(seconds for _, seconds in rows)
    rows.append(("apply eager, mmapped bf16", timed(lambda: mapped.apply(table, targets), args.repeats)))
    fp32 = InPlaceMerger(sources_, fp32_sources=True, fused=False)
    rows.append(("apply eager, fp32 copies", timed(lambda: fp32.apply(table, targets), args.repeats)))
    del fp32
    fused = InPlaceMerger(sources_, fused=True)
    t = time.perf_counter()
    fused.apply(table, targets)
    compile_s = time.perf_counter() - t
    rows.append((f"apply fused, {threads} threads", timed(lambda: fused.apply(table, targets), args.repeats)))
    torch.set_num_threads(1)
    rows.append(("apply fused, 1 thread", timed(lambda: fused.apply(table, targets), args.repeats)))
    torch.set_num_threads(threads)
    print(f"\nExPO re-merge of {nbytes / 2**20:.0f} MiB of bf16 targets "
          f"({SHAPE['num_hidden_layers']}-layer Llama, ~150M params), median of {args.repeats}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'':32s} {'seconds':>8s} {'GiB/s written':>14s} {'x best copy':>12s}")
    for label, seconds in rows:
        print(f"{label:32s} {seconds:8.3f} {nbytes / 2**30 / seconds:14.2f} {seconds / base:12.2f}")
    print(f"(fused: first apply incl. compile {compile_s:.1f} s, once per process)")


if __name__ == "__main__":
    main()
