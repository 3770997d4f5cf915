"""In-place merging into a live model: sources opened once, each coefficient table one pass.

Sources are kept memory-mapped (one private read-only-in-practice map per file), not copied: the
OS page cache then holds one physical copy per node however many actors open the same files, and
nothing is read twice. Orchestration may instead pass already-loaded tensors (e.g. zero-copy views
of arrays from Ray's object store) or CheckpointIndex objects. With `fp32_sources=True` the engine
keeps fp32 copies of bf16/fp16 sources (2x their memory, one flat buffer per source) to skip the
conversion on every apply; benchmarks/inplace_remerge.py measures what that buys.

Runs: tensors that lie back to back in memory in every source AND in the targets, with the same
coefficients, are merged by ONE kernel call over the whole span (a safetensors file stores each
layer's tensors contiguously, and `allocate_targets` lays targets out in the same order), so a
global-alpha ExPO over a single-file checkpoint is one call instead of one per tensor. Targets in
separate allocations (e.g. a model's own parameters) still work, one call per tensor.

`fused` picks kernel.py's compiled kernel (about a memory copy's cost per apply, ~30 s to compile
once per process on first use). Default (None): fused when the sources hold more than
FUSED_MIN_BYTES and a C++ compiler is present, i.e. when the compile cost is repaid in a few trials.
Threads (`threads`, default 1): both kernels run single-threaded unless told otherwise. On a
shared machine every parallel region waits for its slowest, possibly descheduled, OpenMP worker.
benchmarks/inplace_remerge.py, 6 runs on a 2-core box shared with other jobs, ratio to the fastest
copy: fused over per-tensor targets at 2 threads 33-44x in 3 runs (up to 1.35 s), 2.1-2.8x
otherwise, vs 2.2-3.3x always with 1 thread; fused over flat targets (one parallel region) median
1.59x with 1 thread (1.40-2.34) and 1.68x with 2 (1.21-1.96). `threads=None` keeps torch's setting:
for a dedicated many-core host, where one thread cannot saturate memory bandwidth.
"""
from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from raysweep.checkpoints import CheckpointIndex, check_compatible, flat_views, open_checkpoint
from raysweep.config import ConfigError
from raysweep.merge.coefficients import CoefficientTable
from raysweep.merge.kernel import Scratch, combine_into, torch_threads

Source = str | Path | CheckpointIndex | Mapping[str, torch.Tensor]
FUSED_MIN_BYTES = 512 * 2**20


def open_sources(sources: Mapping[str, Source]) -> dict[str, CheckpointIndex]:
    """Open every source (path, index or tensor dict) and check they are compatible."""
    indexes = {}
    for role, src in sources.items():
        if isinstance(src, CheckpointIndex):
            indexes[role] = src
        elif isinstance(src, Mapping):
            indexes[role] = CheckpointIndex.from_tensors(src, path=f"<{role} tensors>")
        else:
            indexes[role] = open_checkpoint(src)
    check_compatible(indexes)
    return indexes


def check_finite(role: str, index: CheckpointIndex, name: str, tensor: torch.Tensor) -> None:
    """ConfigError naming role, file and tensor if `tensor` holds NaN or Inf."""
    if tensor.dtype.is_floating_point and not bool(torch.isfinite(tensor).all()):
        raise ConfigError(f"models.{role} ({index.path}): tensor {name} contains NaN or Inf")


def mapped_tensors(index: CheckpointIndex) -> dict[str, torch.Tensor]:
    """Every tensor of `index` as a flat view; file-backed ones are views of ONE uint8 tensor per
    file (index.tensor gives each its own storage), so neighbours in a file can be spanned by one
    view. The maps are the index's own (private, ACCESS_COPY: writable for torch, never written
    back), so each file is mapped once per process."""
    files: dict[Path, torch.Tensor] = {}
    out = {}
    for name in index.names:
        info = index.info(name)
        if info.file is None or info.nbytes == 0 or info.start % info.dtype.itemsize:
            out[name] = index.tensor(name).reshape(-1)
            continue
        if info.file not in files:
            files[info.file] = index.file_bytes(info.file)
        out[name] = files[info.file][info.start : info.end].view(info.dtype)
    return out


def _address(t: torch.Tensor) -> tuple[str, int, int]:
    return (str(t.device), t.untyped_storage().data_ptr(), t.storage_offset() * t.element_size())


def _follows(prev: torch.Tensor, nxt: torch.Tensor) -> bool:
    """`nxt` starts where `prev` ends, in the same storage, dtype and device (both contiguous)."""
    return (
        nxt.dtype == prev.dtype
        and nxt.device == prev.device
        and nxt.untyped_storage().data_ptr() == prev.untyped_storage().data_ptr()
        and nxt.storage_offset() == prev.storage_offset() + prev.numel()
    )


def _span(first: torch.Tensor, numel: int) -> torch.Tensor:
    """1-D view of `numel` elements of first's storage starting at `first` (bounds-checked)."""
    return first.as_strided((numel,), (1,))


class InPlaceMerger:
    """Applies coefficient tables to a model's tensors: target = sum_i c_i(group) * source_i.

    Arithmetic is kernel.py's reference formula (fp32 accumulation, one rounding to the target's
    dtype), bit for bit.
    """

    def __init__(
        self, sources: Mapping[str, Source], *, fp32_sources: bool = False,
        check_values: bool = True, fused: bool | None = None, threads: int | None = 1,
    ) -> None:
        self.indexes = open_sources(sources)
        self.roles = list(self.indexes)
        first = self.indexes[self.roles[0]]
        self.names: list[str] = list(first.names)
        self.num_layers: int = first.num_layers
        self.architecture: str = first.architecture
        self.aliases: dict[str, str] = first.aliases
        self._groups = {name: first.group(name) for name in self.names}
        self._tensors: dict[str, dict[str, torch.Tensor]] = {}
        for role, index in self.indexes.items():
            loaded = mapped_tensors(index)
            if check_values:
                for name in self.names:
                    check_finite(role, index, name, loaded[name])
            self._tensors[role] = loaded
        # the first source's memory order: the layout allocate_targets and fp32 copies follow
        self.layout: list[str] = sorted(self.names, key=lambda n: _address(self._tensors[self.roles[0]][n]))
        if fp32_sources:
            for role, loaded in self._tensors.items():
                if any(t.dtype in (torch.bfloat16, torch.float16) for t in loaded.values()):
                    self._tensors[role] = self._flat_copy(loaded, torch.float32, torch.device("cpu"))
        self._scratch: dict[torch.device, Scratch] = {}
        if fused is None:
            nbytes = sum(t.numel() * t.element_size() for ts in self._tensors.values() for t in ts.values())
            fused = nbytes > FUSED_MIN_BYTES and shutil.which("g++") is not None
        self.fused = fused
        self.threads = threads

    def group(self, name: str) -> str:
        """Group of a source tensor name or tied alias ("embed", "layer.<i>", ...)."""
        return self._groups[self.aliases.get(name, name)]

    def allocate_targets(
        self, dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Uninitialised targets for every source tensor name, shaped like the sources: views into
        ONE flat buffer laid out like the first source, so `apply` merges whole runs per call.

        dtype: the targets' dtype (default: the first source's, which must then be uniform).
        """
        shapes = self.indexes[self.roles[0]]
        if dtype is None:
            dtypes = {shapes.dtype(n) for n in self.names}
            if len(dtypes) != 1:
                raise ConfigError(f"allocate_targets: sources mix dtypes {sorted(map(str, dtypes))}; pass dtype")
            (dtype,) = dtypes
        flat = self._flat_copy(None, dtype, torch.device(device))
        return {n: flat[n].view(shapes.shape(n)) for n in self.names}

    def _flat_copy(
        self, values: Mapping[str, torch.Tensor] | None, dtype: torch.dtype, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Flat views of one new buffer in `self.layout` order, filled from `values` if given."""
        first = self._tensors[self.roles[0]]
        out = flat_views({n: (first[n].numel(),) for n in self.layout}, dtype, device)
        if values is not None:
            for name, view in out.items():
                view.copy_(values[name])
        return {n: out[n] for n in self.names}

    def apply(self, table: CoefficientTable, targets: Mapping[str, torch.Tensor]) -> None:
        """Write the merge given by `table` into each target tensor, in place.

        targets: checkpoint tensor name -> contiguous tensor of the source's shape (any float
        dtype/device; e.g. dict(model.named_parameters()) or `allocate_targets()`). A tied alias
        whose storage is the embedding's is written once. Every target is checked before any is
        written.
        """
        missing = [r for r in table.sources if r not in self._tensors]
        if missing or len(table.sources) != len(self.roles):
            raise ConfigError(
                f"coefficient table sources {list(table.sources)} do not match the merger's "
                f"sources {self.roles}"
            )
        shapes = self.indexes[self.roles[0]]
        work: list[tuple[torch.Tensor, str]] = []  # (flat target, source name)
        written: set[tuple[int, int]] = set()
        for name, target in targets.items():
            source_name = self.aliases.get(name, name)
            if source_name not in self._groups:
                raise ConfigError(f"target tensor {name} is not in the sources")
            key = (target.data_ptr(), target.numel())
            if key in written:
                continue
            if tuple(target.shape) != shapes.shape(source_name):
                raise ConfigError(
                    f"target tensor {name}: shape {list(target.shape)}, sources have "
                    f"{list(shapes.shape(source_name))}"
                )
            if not target.is_contiguous():
                raise ConfigError(f"target tensor {name} is not contiguous")
            written.add(key)
            work.append((target.view(-1), source_name))
        work.sort(key=lambda item: _address(item[0]))
        srcs = [self._tensors[r] for r in table.sources]
        coeffs = {g: table.for_group(g) for g in {self._groups[n] for _, n in work}}
        with torch.no_grad(), torch_threads(self.threads):
            start = 0
            for i in range(1, len(work) + 1):
                if i < len(work) and self._extends(work[i - 1], work[i], srcs, coeffs):
                    continue
                self._combine(work[start:i], srcs, coeffs)
                start = i

    def _extends(self, prev, nxt, srcs, coeffs) -> bool:
        """nxt can join prev's run: same coefficients, adjacent in the target and every source."""
        (t0, n0), (t1, n1) = prev, nxt
        return (
            coeffs[self._groups[n0]] == coeffs[self._groups[n1]]
            and _follows(t0, t1)
            and all(_follows(s[n0], s[n1]) for s in srcs)
        )

    def _combine(self, run, srcs, coeffs) -> None:
        """One kernel call over a run of adjacent (target, source name) pairs."""
        (target, name), numel = run[0], sum(t.numel() for t, _ in run)
        out = _span(target, numel) if len(run) > 1 else target
        inputs = [_span(s[name], numel) if len(run) > 1 else s[name] for s in srcs]
        if out.device != inputs[0].device:
            inputs = [t.to(out.device, non_blocking=True) for t in inputs]
        combine_into(out, inputs, coeffs[self._groups[name]], self._scratch_for(out.device), fused=self.fused)

    def _scratch_for(self, device: torch.device) -> Scratch:
        if device not in self._scratch:
            self._scratch[device] = Scratch(device)
        return self._scratch[device]
