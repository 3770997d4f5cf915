"""The generation protocol every backend implements, and the sampling spec.

The sweep actor drives a backend like this, once per trial config:

    target = backend.weight_targets()      # name -> tensor to overwrite in place (checkpoint names)
    merger.apply(table, target)            # merge/engine.py writes the merged weights there
    backend.commit_weights()               # make them live (vLLM: push + reset prefix cache)
    outs = backend.generate(prompts, sampling)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from raysweep.config import Spec


class SamplingSpec(Spec):
    """Sampling parameters shared by every backend."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 48
    n: int = 1  # samples per prompt
    seed: int = 0
    batch_size: int = 64  # prompts per forward batch (transformers backend)
    use_chat_template: bool = True  # applied only when the tokenizer has one


@dataclass
class Generation:
    """One sampled response. `prompt_truncated` is True when the prompt was cut to fit the context;
    `num_tokens` counts the response tokens up to and including EOS."""

    prompt_index: int
    sample_index: int
    text: str
    num_tokens: int
    finished: bool  # ended with EOS (False: hit max_new_tokens)
    prompt_truncated: bool = False
    token_ids: list[int] = field(default_factory=list)  # the response's ids (EOS included if emitted)


class GenerationBackend(Protocol):
    name: str

    def weight_targets(self) -> dict[str, torch.Tensor]:
        """Tensors (keyed by checkpoint tensor name) that a merge writes into, in place."""

    def commit_weights(self) -> None:
        """Make the tensors written into `weight_targets()` live for the next `generate`."""

    def generate(self, prompts: list[str], sampling: SamplingSpec) -> list[Generation]:
        """Sample `sampling.n` responses per prompt; order: prompt-major, then sample."""

    def close(self) -> None:
        """Release the engine / model."""
