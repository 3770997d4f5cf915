"""Reward-model scorer: any `AutoModelForSequenceClassification` checkpoint in a local folder.

    - {name: reward_model, path: models/rm, batch_size: 16, max_length: 2048}

Input text: when the tokenizer has a chat template (and `use_chat_template`), the pair is rendered as
[user: prompt, assistant: response] with that template and tokenized without extra special tokens;
otherwise it is plain `prompt + response`, tokenized with the tokenizer's own special tokens (how a
plain-text reward model such as the demo world's is trained).

Scores do not depend on batch size or on the tokenizer's padding side: the scorer always pads on
the right itself, with an attention mask, so every real token keeps the position and context it has
unpadded, and the pad id it fills with is the one the model's pooling skips (decoder reward models
read the last non-pad token, encoders their first token). Sequences are sorted by length before
batching to keep padding small. Longer than `max_length` tokens: truncated (by default from the
left, keeping the response's end that the pooled token sits on) and flagged in `<column>_truncated`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from raysweep.config import ConfigError, Spec

_DTYPES = ("float32", "bfloat16", "float16")


class RewardModelSpec(Spec):
    name: Literal["reward_model"] = "reward_model"
    path: str  # local HF folder: config.json, safetensors weights, tokenizer
    column: str = "reward"
    batch_size: int = Field(default=16, ge=1)
    max_length: int = Field(default=2048, ge=2)  # tokens, prompt + response
    truncation_side: Literal["left", "right"] = "left"
    use_chat_template: bool = True
    label_index: int = Field(default=0, ge=0)  # which logit is the reward when num_labels > 1
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"  # auto | cpu | cuda | cuda:<i>
    trust_remote_code: bool = False


def check_classifier_config(folder: Path, trust_remote_code: bool = False):
    """The folder's config; a ConfigError unless it declares a sequence-classification architecture."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise ConfigError(f"reward_model.path: {folder}: no config.json (expected an HF model folder)")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ConfigError(
            f"reward_model.path: {folder}: architectures {archs} has no classification head; "
            f"expected a *ForSequenceClassification reward model"
        )
    return config


class RewardModelScorer:
    """Scores (prompt, response) pairs with a reward model; column `spec.column` (higher is better)."""

    name = "reward_model"

    def __init__(self, spec: RewardModelSpec):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from raysweep.devices import resolve_device

        self.spec = spec
        folder = Path(spec.path)
        if not folder.is_dir():
            raise ConfigError(f"reward_model.path: model folder not found: {folder}")
        check_classifier_config(folder, spec.trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=spec.trust_remote_code)
        self.tokenizer.truncation_side = spec.truncation_side
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        if pad_id is None:
            raise ConfigError(
                f"reward_model.path: {folder}: tokenizer has neither a pad token nor an eos token"
            )
        self.device = resolve_device(spec.device)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            folder,
            dtype=getattr(torch, spec.dtype),
            output_loading_info=True,
            use_safetensors=True,
            trust_remote_code=spec.trust_remote_code,
        )
        missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
        if missing:
            raise ConfigError(
                f"reward_model.path: {folder}: weights missing for {missing[:3]} - no trained "
                f"classification head (is this a base or causal-LM checkpoint?)"
            )
        text_config = model.config.get_text_config()
        if text_config.pad_token_id is None:
            text_config.pad_token_id = pad_id  # the model's pooling needs it for batches > 1
        self.pad_id = int(text_config.pad_token_id)
        if spec.label_index >= model.config.num_labels:
            raise ConfigError(
                f"reward_model.label_index: {spec.label_index} but {folder} has "
                f"{model.config.num_labels} label(s)"
            )
        self.model = model.to(self.device).eval()
        self.chat = bool(spec.use_chat_template and getattr(self.tokenizer, "chat_template", None))

    def encode(self, prompts: list[str], responses: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per pair (at most max_length) and whether each was truncated."""
        if self.chat:
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                    tokenize=False,
                )
                for p, r in zip(prompts, responses)
            ]
        else:
            texts = [p + r for p, r in zip(prompts, responses)]
        special = not self.chat  # a rendered template already carries its special tokens
        ids = self.tokenizer(texts, add_special_tokens=special)["input_ids"]
        truncated = [len(x) > self.spec.max_length for x in ids]
        if any(truncated):
            long_texts = [t for t, cut in zip(texts, truncated) if cut]
            cut_ids = iter(
                self.tokenizer(
                    long_texts, add_special_tokens=special, truncation=True,
                    max_length=self.spec.max_length,
                )["input_ids"]
            )
            ids = [next(cut_ids) if cut else x for x, cut in zip(ids, truncated)]
        return [list(x) for x in ids], truncated

    def rewards(self, ids: list[list[int]]) -> list[float]:
        """One fp32 reward per token sequence, independent of batching (right padding + mask)."""
        import torch

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = [0.0] * len(ids)
        with torch.no_grad():
            for start in range(0, len(order), self.spec.batch_size):
                chunk = order[start : start + self.spec.batch_size]
                width = max(len(ids[i]) for i in chunk)
                x = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    x[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, : len(ids[i])] = 1
                logits = self.model(
                    input_ids=x.to(self.device), attention_mask=mask.to(self.device)
                ).logits
                values = logits[:, self.spec.label_index].float().cpu().tolist()
                for row, i in enumerate(chunk):
                    out[i] = values[row]
        return out

    def score(
        self, prompts: list[str], responses: list[str], references: list[str] | None = None
    ) -> dict[str, list[float]]:
        """{column: reward per pair, column_truncated: 1.0 where the pair was cut to max_length}."""
        if len(prompts) != len(responses):
            raise ValueError(f"reward_model: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return {self.spec.column: [], f"{self.spec.column}_truncated": []}
        ids, truncated = self.encode(prompts, responses)
        if any(not x for x in ids):
            raise ValueError("reward_model: a (prompt, response) pair encodes to zero tokens")
        return {
            self.spec.column: self.rewards(ids),
            f"{self.spec.column}_truncated": [float(t) for t in truncated],
        }
