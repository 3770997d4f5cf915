"""Prompt -> token ids, shared by every backend so they see identical inputs.

Both backends tokenize here (vLLM receives token ids, not text), so chat templating, the context
budget and left truncation are decided once and cannot drift between backends.
"""
from __future__ import annotations

from pathlib import Path

from raysweep.config import ConfigError
from raysweep.generate.base import SamplingSpec


def load_tokenizer(model_dir: Path, trust_remote_code: bool = False):
    """The folder's tokenizer, padding on the left; eos doubles as pad when there is no pad token."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{model_dir}: cannot load a tokenizer ({type(err).__name__})") from None
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ConfigError(f"{model_dir}: tokenizer has no pad token and no eos token to pad with")
        tok.pad_token = tok.eos_token
    return tok


def context_length(config, max_model_len: int | None, model_dir: Path) -> int:
    """Tokens of context (prompt + response): `max_model_len` if set, else the model's maximum."""
    native = getattr(config, "max_position_embeddings", None)
    if max_model_len is not None:
        if native is not None and max_model_len > native:
            raise ConfigError(
                f"generation.max_model_len: {max_model_len} exceeds the model's "
                f"max_position_embeddings {native} ({model_dir})"
            )
        return max_model_len
    if native is None:
        raise ConfigError(f"{model_dir}: config has no max_position_embeddings; set max_model_len")
    return int(native)


def prompt_budget(context: int, sampling: SamplingSpec) -> int:
    """Longest prompt (tokens) that leaves room for `max_new_tokens` in the context."""
    budget = context - sampling.max_new_tokens
    if budget < 1:
        raise ConfigError(
            f"sampling.max_new_tokens: {sampling.max_new_tokens} leaves no room for a prompt "
            f"in a context of {context} tokens"
        )
    return budget


def encode_prompts(
    tokenizer, prompts: list[str], sampling: SamplingSpec, budget: int
) -> list[tuple[list[int], bool]]:
    """Token ids per prompt and whether it was cut. Long prompts keep their last `budget` tokens
    (the end of a prompt, next to where the answer starts, matters most)."""
    templated = sampling.use_chat_template and bool(getattr(tokenizer, "chat_template", None))
    out = []
    for i, prompt in enumerate(prompts):
        if templated:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if not ids:
            raise ConfigError(f"prompt {i}: encodes to zero tokens")
        truncated = len(ids) > budget
        out.append((list(ids[-budget:]) if truncated else list(ids), truncated))
    return out


def cut_at_eos(token_ids: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    """Response tokens up to and including the first EOS, and whether an EOS was emitted."""
    for k, tok in enumerate(token_ids):
        if tok in eos_ids:
            return token_ids[: k + 1], True
    return token_ids, False


def eos_token_ids(generation_config, tokenizer) -> set[int]:
    """Every id that ends a response: the model's generation config's, plus the tokenizer's."""
    ids = getattr(generation_config, "eos_token_id", None) if generation_config else None
    ids = set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
