"""Sharded safetensors writer: HF layout (model.safetensors, or shards + index json).

Headers are planned from a layout up front, so tensors can stream straight to disk one at a time.
The writer fills `out_dir` in place; callers that need all-or-nothing output write into a temporary
folder and rename it (raysweep.merge.materialise does).
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from raysweep.checkpoints import DTYPE_NAMES, INDEX_FILE, SINGLE_FILE, TensorInfo


def plan_shards(layout: Sequence[TensorInfo], max_shard_bytes: int) -> list[list[TensorInfo]]:
    """Split tensors, in order, into shards of at most `max_shard_bytes` (a bigger tensor alone)."""
    shards: list[list[TensorInfo]] = [[]]
    size = 0
    for info in layout:
        nbytes = _nbytes(info)
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(info)
        size += nbytes
    return shards


def _nbytes(info: TensorInfo) -> int:
    return math.prod(info.shape) * info.dtype.itemsize


def _shard_header(shard: Sequence[TensorInfo], metadata: Mapping[str, str]) -> bytes:
    header: dict = {"__metadata__": dict(metadata)}
    offset = 0
    for info in shard:
        nbytes = _nbytes(info)
        header[info.name] = {"dtype": DTYPE_NAMES[info.dtype], "shape": list(info.shape),
                             "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keeps every tensor 8-byte aligned in the file
    return struct.pack("<Q", len(raw)) + raw


def write_checkpoint(
    tensors: Iterable[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
    out_dir: str | Path,
    *,
    layout: Sequence[TensorInfo] | None = None,
    max_shard_bytes: int = 5 * 2**30,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write (name, tensor) pairs as HF safetensors shards (+ index json when more than one).

    With `layout` (name, dtype, shape per tensor, in the order the pairs arrive) headers are
    written up front and each tensor's bytes go straight to disk, so memory stays at one tensor;
    without it the pairs are collected first. Returns the shard files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(tensors, Mapping):
        tensors = tensors.items()
    if layout is None:
        tensors = list(tensors)
        layout = [TensorInfo(n, t.dtype, tuple(t.shape)) for n, t in tensors]
    shards = plan_shards(layout, max_shard_bytes)
    names = (
        [SINGLE_FILE] if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    meta = {"format": "pt", **(metadata or {})}
    stream = iter(tensors)
    weight_map: dict[str, str] = {}
    for shard, fname in zip(shards, names):
        with open(out_dir / fname, "wb") as fh:
            fh.write(_shard_header(shard, meta))
            for info in shard:
                name, tensor = next(stream)
                if name != info.name or tensor.dtype != info.dtype or tuple(tensor.shape) != info.shape:
                    raise ValueError(f"write_checkpoint: got {name} {tensor.dtype} "
                                     f"{list(tensor.shape)}, layout expects {info.name}")
                if tensor.numel():
                    fh.write(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
                weight_map[info.name] = fname
    if len(shards) > 1:
        total = sum(_nbytes(info) for info in layout)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return [out_dir / n for n in names]
