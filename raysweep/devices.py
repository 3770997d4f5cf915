"""Where a model runs: the one reading of a config's `device` field ("auto" | "cpu" | "cuda[:i]")."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """`auto` means the first GPU when CUDA is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
