"""In-place merging into a live model: sources opened once, each coefficient table one pass.

Sources are kept memory-mapped (checkpoints.py: private read-only-in-practice maps), not copied:
the OS page cache then holds one physical copy per node however many actors open the same files,
and nothing is read twice. Orchestration may instead pass already-loaded tensors (e.g. zero-copy
views of arrays from Ray's object store) or CheckpointIndex objects. With `fp32_sources=True` the
engine keeps fp32 copies of bf16/fp16 sources (2x their memory) to skip the conversion on every
apply; benchmarks/inplace_remerge.py measures what that buys.

`fused` picks kernel.py's compiled kernel (about a memory copy's cost per apply, ~30 s to compile
once per process on first use). Default (None): fused when the sources hold more than
FUSED_MIN_BYTES and a C++ compiler is present, i.e. when the compile cost is repaid in a few trials.
"""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from raysweep.checkpoints import CheckpointIndex, check_compatible, open_checkpoint
from raysweep.config import ConfigError
from raysweep.merge.coefficients import CoefficientTable
from raysweep.merge.kernel import Scratch, combine_into, one_thread

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


class InPlaceMerger:
    """Applies coefficient tables to a model's tensors: target = sum_i c_i(group) * source_i.

    Arithmetic is kernel.py's reference formula (fp32 accumulation, one rounding to the target's
    dtype), bit for bit.
    """

    def __init__(
        self, sources: Mapping[str, Source], *, fp32_sources: bool = False,
        check_values: bool = True, fused: bool | None = None,
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
            loaded = {}
            for name in self.names:
                tensor = index.tensor(name)
                if check_values:
                    check_finite(role, index, name, tensor)
                if fp32_sources and tensor.dtype in (torch.bfloat16, torch.float16):
                    tensor = tensor.float()
                loaded[name] = tensor.reshape(-1)
            self._tensors[role] = loaded
        self._scratch: dict[torch.device, Scratch] = {}
        if fused is None:
            nbytes = sum(t.numel() * t.element_size() for ts in self._tensors.values() for t in ts.values())
            fused = nbytes > FUSED_MIN_BYTES and shutil.which("g++") is not None
        self.fused = fused

    def group(self, name: str) -> str:
        """Group of a source tensor name or tied alias ("embed", "layer.<i>", ...)."""
        return self._groups[self.aliases.get(name, name)]

    def apply(self, table: CoefficientTable, targets: Mapping[str, torch.Tensor]) -> None:
        """Write the merge given by `table` into each target tensor, in place.

        targets: checkpoint tensor name -> contiguous tensor of the source's shape (any float
        dtype/device; e.g. dict(model.named_parameters())). A tied alias whose storage is the
        embedding's is written once.
        """
        missing = [r for r in table.sources if r not in self._tensors]
        if missing or len(table.sources) != len(self.roles):
            raise ConfigError(
                f"coefficient table sources {list(table.sources)} do not match the merger's "
                f"sources {self.roles}"
            )
        srcs = [self._tensors[r] for r in table.sources]
        written: set[tuple[int, int]] = set()
        with torch.no_grad(), (contextlib.nullcontext() if self.fused else one_thread()):
            for name, target in targets.items():
                source_name = self.aliases.get(name, name)
                if source_name not in self._groups:
                    raise ConfigError(f"target tensor {name} is not in the sources")
                key = (target.data_ptr(), target.numel())
                if key in written:
                    continue
                if tuple(target.shape) != self.indexes[self.roles[0]].shape(source_name):
                    raise ConfigError(
                        f"target tensor {name}: shape {list(target.shape)}, sources have "
                        f"{list(self.indexes[self.roles[0]].shape(source_name))}"
                    )
                if not target.is_contiguous():
                    raise ConfigError(f"target tensor {name} is not contiguous")
                coeffs = table.for_group(self._groups[source_name])
                inputs = [s[source_name] for s in srcs]
                if target.device != inputs[0].device:
                    inputs = [t.to(target.device, non_blocking=True) for t in inputs]
                combine_into(target, inputs, coeffs, self._scratch_for(target.device), fused=self.fused)
                written.add(key)

    def _scratch_for(self, device: torch.device) -> Scratch:
        if device not in self._scratch:
            self._scratch[device] = Scratch(device)
        return self._scratch[device]
