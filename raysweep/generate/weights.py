"""Checkpoint tensor names and values read from an HF folder's safetensors (never pickles)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from raysweep.config import ConfigError


def safetensors_files(model_dir: Path) -> list[Path]:
    """The folder's weight shards: from model.safetensors.index.json, else model.safetensors."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / s for s in shards]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise ConfigError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")


def checkpoint_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape for every tensor in the checkpoint (headers only, no data read)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in safetensors_files(model_dir):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def load_into(model_dir: Path, targets: dict[str, torch.Tensor]) -> None:
    """Copy every checkpoint tensor into `targets[name]` (cast to the target's dtype)."""
    from safetensors import safe_open

    for path in safetensors_files(model_dir):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                targets[name].copy_(f.get_tensor(name))
