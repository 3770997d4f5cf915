"""In-place re-merge (what every sweep trial pays) vs a plain memory copy of the same bytes.

    python benchmarks/inplace_remerge.py [--repeats 9]

Uses the ~150M-parameter bf16 Llama pair of merge_vs_mergekit.py. Baselines: `target.copy_(source)`
for every tensor, and one copy_ of the whole flat buffer (reads one source, writes the target: the
least any re-merge can do). Measured: InPlaceMerger.apply with an ExPO table (reads two sources,
converts to fp32, writes the target) into two kinds of bf16 targets: "separate" (one allocation per
tensor, like a model's own parameters: one kernel call per tensor) and "flat"
(InPlaceMerger.allocate_targets: views of one buffer laid out like the sources, so adjacent tensors
with equal coefficients merge in one call). Kernels: eager chunked on memory-mapped bf16 sources,
eager on preconverted fp32 copies (fp32_sources=True, 2x the sources' memory), and the fused
compiled kernel (compile time reported apart). Copies and the fused kernel run with torch's thread
count and with 1 thread (InPlaceMerger's `threads`; a busy machine can make OpenMP threads much
slower than one); the eager kernel runs with the merger's default, 1 thread. Ratios are against the
fastest copy.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from merge_vs_mergekit import SHAPE, build_pair

from raysweep.merge.engine import InPlaceMerger
from raysweep.merge.recipes import compile_recipe, parse_recipe


def threads(n: int, fn):
    """fn run with torch's intra-op thread count set to n (restored after)."""
    def run() -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(before)
    return run


def timed_rounds(cases: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds per case, cases run round-robin (one of each per round) so that load from
    other processes, which drifts over seconds, falls on every case alike."""
    for fn in cases.values():
        fn()  # warm: pages faulted in, scratch allocated, kernels compiled
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(repeats):
        for label, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    return {label: statistics.median(ts) for label, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    pair = build_pair()
    recipe = parse_recipe({"method": "expo", "alpha": 0.5,
                           "models": {k: str(v) for k, v in pair.items()}}, "bench")
    sources_ = {"aligned": pair["aligned"], "sft": pair["sft"]}
    mapped = InPlaceMerger(sources_, fused=False)
    table = compile_recipe(recipe, mapped.num_layers)
    aligned = mapped.indexes["aligned"]
    separate = {n: torch.empty(aligned.shape(n), dtype=aligned.dtype(n)) for n in mapped.names}
    flat = mapped.allocate_targets()
    sources = {n: aligned.tensor(n) for n in mapped.names}
    flat_source = torch.cat([sources[n].reshape(-1) for n in mapped.layout])
    flat_target = torch.empty_like(flat_source)
    nbytes = sum(t.numel() * t.element_size() for t in separate.values())

    def copy() -> None:
        for name, target in separate.items():
            target.copy_(sources[name])

    fp32 = InPlaceMerger(sources_, fp32_sources=True, fused=False)
    n_threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    fused = {n: InPlaceMerger(sources_, fused=True, threads=n) for n in n_threads}
    t = time.perf_counter()
    fused[1].apply(table, separate)
    fused[1].apply(table, flat)
    compile_s = time.perf_counter() - t
    copies = {}
    for n in n_threads:
        copies[f"copy_ per tensor, {n} thr"] = threads(n, copy)
        copies[f"copy_ one buffer, {n} thr"] = threads(n, lambda: flat_target.copy_(flat_source))
    merges = {
        "eager, bf16 mmap, separate": lambda: mapped.apply(table, separate),
        "eager, bf16 mmap, flat": lambda: mapped.apply(table, flat),
        "eager, fp32 copies, flat": lambda: fp32.apply(table, flat),
    }
    for n in n_threads:
        merges[f"fused, {n} thr, separate"] = lambda m=fused[n]: m.apply(table, separate)
        merges[f"fused, {n} thr, flat"] = lambda m=fused[n]: m.apply(table, flat)
    timings = timed_rounds({**copies, **merges}, args.repeats)
    rows = list(timings.items())
    base = min(timings[label] for label in copies)
    # same table, same formula: the two layouts must hold the same bits
    same = all(torch.equal(separate[n].view(torch.int16), flat[n].view(torch.int16)) for n in mapped.names)
    print(f"\nExPO re-merge of {nbytes / 2**20:.0f} MiB of bf16 targets "
          f"({SHAPE['num_hidden_layers']}-layer Llama, ~150M params), median of {args.repeats} "
          f"round-robin rounds, torch threads {torch.get_num_threads()}")
    print(f"{'':32s} {'seconds':>8s} {'GiB/s written':>14s} {'x fastest copy':>15s}")
    for label, seconds in rows:
        print(f"{label:32s} {seconds:8.3f} {nbytes / 2**30 / seconds:14.2f} {seconds / base:15.2f}")
    print(f"(fused: first apply incl. compile {compile_s:.1f} s, once per process; "
          f"separate and flat targets bit-identical: {same})")


if __name__ == "__main__":
    main()
