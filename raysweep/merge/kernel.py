"""The one linear kernel every recipe runs through: out = round(sum_i c_i * fp32(src_i)).

Reference formula (what "exact" means, and what the tests recompute independently):

    acc = c_a * src_a.float()            # a: first source with a nonzero coefficient, table order
    acc = acc + c_b * src_b.float()      # each further nonzero-coefficient source, in table order
    out = acc.to(out.dtype)              # the only rounding to the output dtype

Each coefficient is a Python float, rounded to fp32 by torch's scalar multiply; every product is
rounded to fp32 before the add (never fused: torch's `add(alpha=)` uses FMA and differs in ~18% of
elements). Sources with coefficient 0 are skipped; all zero -> zeros.

Two implementations of that one formula:
- eager (default): torch ops over cache-sized chunks, so fp32 partial sums stay in cache and memory
  sees one read of each source and one write of `out`; ~6 ops per chunk.
- fused (`fused=True`): the same expression compiled once by torch.compile (inductor, C++; its
  default -ffp-contract=off keeps products and sums separately rounded) into one loop per tensor.
  ~30 s to compile on first use (cached on disk after), then about the cost of a memory copy:
  what long-lived sweep actors on real models want. Tests check both against the reference.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

CHUNK = 1 << 18  # elements; 2 fp32 scratch chunks = 2 MiB, fits L2/L3 on current CPUs


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with torch's intra-op thread count set to `n` (None: leave it), restored after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread():
    """Run the eager kernel single-threaded (restoring torch's thread count after).

    Its ops are small (one cache-sized chunk each), so intra-op threads buy little, and on a busy
    machine every op waits for a descheduled OpenMP worker: measured on a 2-core box under load,
    a 150M-parameter bf16 merge took 13.8 s with 2 threads and 1.1 s with 1.
    """
    return torch_threads(1)


class Scratch:
    """Reusable fp32 buffers (2 x CHUNK) so repeated merges allocate nothing."""

    def __init__(self, device: torch.device | str = "cpu", chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self.acc = torch.empty(chunk, dtype=torch.float32, device=device)
        self.tmp = torch.empty(chunk, dtype=torch.float32, device=device)


def _term(src: torch.Tensor, coeff: float, out: torch.Tensor) -> torch.Tensor:
    """out = coeff * fp32(src), rounded once to fp32 (src may be bf16/fp16/fp32)."""
    if src.dtype == torch.float32:
        if coeff == 1.0:
            out.copy_(src)
        else:
            torch.mul(src, coeff, out=out)
    else:
        # mul on a bf16 tensor would round the product to bf16; convert first, then multiply.
        out.copy_(src)
        if coeff != 1.0:
            out.mul_(coeff)
    return out


def _fused_expr(out: torch.Tensor, coeffs: torch.Tensor, sources: list[torch.Tensor]) -> None:
    acc = coeffs[0] * sources[0].float()
    for i in range(1, len(sources)):
        acc = acc + coeffs[i] * sources[i].float()
    out.copy_(acc)


_FUSED: list = []


def _fused():
    if not _FUSED:
        _FUSED.append(torch.compile(_fused_expr, dynamic=True, fullgraph=True))
    return _FUSED[0]


def combine_into(
    out: torch.Tensor,
    sources: Sequence[torch.Tensor],
    coeffs: Sequence[float],
    scratch: Scratch,
    *,
    fused: bool = False,
    check_finite: bool = False,
) -> bool:
    """Write sum_i coeffs[i] * sources[i] into `out` (same numel, contiguous), per the reference.

    Non-floating tensors (int/bool buffers) must be equal across the contributing sources and are
    copied, since a linear combination of them has no meaning. With `check_finite`, returns False
    when the fp32 result may hold NaN/Inf (a chunk's fp32 sum is not finite, computed while the
    chunk is in cache; callers confirm elementwise), else True.
    """
    terms = [(s.reshape(-1), float(c)) for s, c in zip(sources, coeffs) if c != 0.0]
    flat = out.view(-1)
    if not terms:
        flat.zero_()
        return True
    if not out.dtype.is_floating_point:
        first = terms[0][0]
        if any(not torch.equal(first, s) for s, _ in terms[1:]):
            raise ValueError("non-floating tensor differs between sources; cannot combine it")
        flat.copy_(first)
        return True
    n = flat.numel()
    if fused and n:
        # fp32 coefficients as a tensor: one compiled graph serves every table
        weights = torch.tensor([c for _, c in terms], dtype=torch.float32, device=out.device)
        _fused()(flat, weights, [src for src, _ in terms])
        return not check_finite or bool(torch.isfinite(flat.sum(dtype=torch.float32)))
    finite = True
    step = scratch.chunk
    direct = out.dtype == torch.float32  # accumulate straight into the output, no final copy
    for start in range(0, n, step):
        stop = min(start + step, n)
        acc = flat[start:stop] if direct else scratch.acc[: stop - start]
        (src, coeff), *others = terms
        _term(src[start:stop], coeff, acc)
        for src, coeff in others:
            acc.add_(_term(src[start:stop], coeff, scratch.tmp[: stop - start]))
        if check_finite and finite:
            finite = bool(torch.isfinite(acc.sum()))
        if not direct:
            flat[start:stop].copy_(acc)
    return finite
