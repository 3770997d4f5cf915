"""Backend registry: name -> "module:Class", imported only when chosen (vLLM is heavy)."""
from __future__ import annotations

import importlib
from pathlib import Path

from raysweep.config import ConfigError
from raysweep.generate.base import GenerationBackend
from raysweep.generate.spec import GenerationSpec

BACKENDS: dict[str, str] = {
    "transformers": "raysweep.generate.hf:TransformersBackend",
    "vllm": "raysweep.generate.vllm:VLLMBackend",
}


def make_backend(spec: GenerationSpec, model_dir: str | Path) -> GenerationBackend:
    """Start the backend named by `spec.backend` on the HF folder `model_dir`.

    The folder's config and tokenizer define the live model; its weights are the initial weights
    (later replaced in place through `weight_targets()` + `commit_weights()`).
    """
    target = BACKENDS.get(spec.backend)
    if target is None:
        raise ConfigError(
            f"generation.backend: unknown backend {spec.backend!r}; valid: {', '.join(sorted(BACKENDS))}"
        )
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(spec, Path(model_dir))
