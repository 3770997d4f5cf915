"""transformers backend: batched `generate` with left padding on CPU or one GPU.

The live model's parameters are the merge targets, so a merge writes straight into the weights the
next `generate` uses; there is nothing to push. On first use they are repacked as views of ONE flat
buffer in the checkpoint's file order (tied weights stay one Parameter), so a merge engine whose
sources share that layout covers many tensors per kernel call instead of one call per tensor.
"""
from __future__ import annotations

import gc
from pathlib import Path

import torch

from raysweep.checkpoints import flat_views, open_checkpoint
from raysweep.config import ConfigError
from raysweep.devices import resolve_device
from raysweep.generate.base import Generation, SamplingSpec
from raysweep.generate.spec import GenerationSpec
from raysweep.generate.tokens import (
    context_length,
    cut_at_eos,
    encode_prompts,
    eos_token_ids,
    load_tokenizer,
    prompt_budget,
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TransformersBackend:
    """One `AutoModelForCausalLM` held for the backend's life; weights replaced in place."""

    name = "transformers"

    def __init__(self, spec: GenerationSpec, model_dir: Path) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM

        self.model_dir = Path(model_dir)
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.tokenizer = load_tokenizer(self.model_dir, spec.trust_remote_code)
        config = AutoConfig.from_pretrained(self.model_dir, trust_remote_code=spec.trust_remote_code)
        self.context = context_length(config, spec.max_model_len, self.model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_dir,
            dtype=_DTYPES.get(spec.dtype, "auto"),
            use_safetensors=True,
            trust_remote_code=spec.trust_remote_code,
        ).to(self.device)
        self.model.requires_grad_(False)
        self.model.eval()
        self.eos_ids = eos_token_ids(self.model.generation_config, self.tokenizer)
        self._targets: dict[str, torch.Tensor] | None = None

    def weight_targets(self) -> dict[str, torch.Tensor]:
        """Live parameters keyed by checkpoint tensor name (only names the checkpoint holds, so a
        tied lm_head, absent from the checkpoint, is written once through the embedding)."""
        if self._targets is None:
            live = self.model.state_dict()  # detached views sharing the parameters' storage
            targets = {}
            index = open_checkpoint(self.model_dir)
            for name in index.names:
                shape = index.shape(name)
                if name not in live:
                    raise ConfigError(
                        f"{self.model_dir}: checkpoint tensor {name!r} has no parameter in the loaded model"
                    )
                if tuple(live[name].shape) != shape:
                    raise ConfigError(
                        f"{self.model_dir}: tensor {name!r} has shape {shape} in the checkpoint, "
                        f"{tuple(live[name].shape)} in the model"
                    )
                targets[name] = live[name]
            self._targets = self._pack({n: targets[n] for n in index.file_order()}) or targets
        return self._targets

    def _pack(self, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """Move the parameters behind `targets` (in that order) into one flat buffer; return the new
        views, or None (parameters left as they are) if they are not all parameters of one dtype
        and device, or a GPU lacks room for the transient second copy."""
        params = dict(self.model.named_parameters(remove_duplicate=False))
        if any(n not in params for n in targets) or len({(t.dtype, t.device) for t in targets.values()}) != 1:
            return None
        first = next(iter(targets.values()))
        sizes = [t.numel() for t in targets.values()]
        if first.device.type == "cuda" and torch.cuda.mem_get_info(first.device)[0] < 2 * sum(sizes) * first.element_size():
            return None
        packed = flat_views({n: t.shape for n, t in targets.items()}, first.dtype, first.device)
        for name, view in packed.items():
            view.copy_(targets[name])
            params[name].data = view  # a tied Parameter is one object: its other names follow
        return packed

    def commit_weights(self) -> None:
        """Writes into `weight_targets()` are already live; only make sure of eval mode."""
        self.model.eval()

    @torch.inference_mode()
    def generate(self, prompts: list[str], sampling: SamplingSpec) -> list[Generation]:
        """`sampling.n` responses per prompt, prompt-major. Reseeded from `sampling.seed` at every
        call, so the same prompts, seed and weights give the same responses whatever came before."""
        from transformers import GenerationConfig

        encoded = encode_prompts(self.tokenizer, prompts, sampling, prompt_budget(self.context, sampling))
        greedy = sampling.temperature == 0.0
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy else 0,  # 0 = off, matching vLLM's default (no top-k)
            num_return_sequences=1 if greedy else sampling.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
        )
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        out: list[Generation] = []
        with torch.random.fork_rng(devices=devices):  # reseed without disturbing the caller's RNG
            torch.manual_seed(sampling.seed)
            for start in range(0, len(encoded), sampling.batch_size):
                chunk = encoded[start : start + sampling.batch_size]
                batch = self.tokenizer.pad(
                    {"input_ids": [ids for ids, _ in chunk]}, padding=True, return_tensors="pt"
                ).to(self.device)
                rows = self.model.generate(**batch, generation_config=config)
                rows = rows[:, batch["input_ids"].shape[1] :]
                if greedy:  # n identical samples, decoded once
                    rows = rows.repeat_interleave(sampling.n, dim=0)
                for r, row in enumerate(rows.tolist()):  # (len(chunk) * n, new)
                    p, s = divmod(r, sampling.n)
                    ids, finished = cut_at_eos(row, self.eos_ids)
                    out.append(
                        Generation(
                            prompt_index=start + p,
                            sample_index=s,
                            text=self.tokenizer.decode(ids, skip_special_tokens=True),
                            num_tokens=len(ids),
                            finished=finished,
                            prompt_truncated=chunk[p][1],
                            token_ids=ids,
                        )
                    )
        return out

    def close(self) -> None:
        self._targets = None
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
