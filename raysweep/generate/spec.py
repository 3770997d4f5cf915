"""The generation config block: which backend, how to sample, and the engine options."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from raysweep.config import Spec
from raysweep.generate.base import SamplingSpec


class GenerationSpec(Spec):
    """`generation:` in a sweep config. Engine options a backend does not use are ignored by it."""

    backend: str = "transformers"  # a name in registry.BACKENDS (validated against it)
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: the checkpoint's
    max_model_len: int | None = Field(default=None, ge=2)  # None: config.max_position_embeddings
    trust_remote_code: bool = False
    device: str = "auto"  # transformers: auto | cpu | cuda | cuda:<i>
    # vLLM-only options
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)  # on CPU: share of RAM
    kv_cache_memory_bytes: int | None = Field(default=None, gt=0)  # explicit KV cache size
    enforce_eager: bool = False  # True skips graph capture / compilation (fast start, CPU tests)
    multiprocessing: bool = True  # VLLM_ENABLE_V1_MULTIPROCESSING; False runs the engine in-process

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        from raysweep.generate.registry import BACKENDS

        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; valid: {', '.join(sorted(BACKENDS))}")
        return name
