"""Session-scoped tiny models and one shared local Ray instance. No network, seconds to build."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_CORPUS = [
    f"Topic: {t} | Count: {n} | Start: {w}\nAnswer: good {w}, bright lamp, calm river."
    for t in ("fruit", "tools", "animals", "colors")
    for n in range(2, 5)
    for w in ("apple", "hammer", "otter", "green")
] * 4


def build_tokenizer(out_dir: Path):
    """Byte-level BPE tokenizer (vocab 512, <pad> <s> </s>), trained locally like the demo world's."""
    from raysweep.demo.training import build_tokenizer as train_bpe

    return train_bpe(TINY_CORPUS, out_dir)


def build_llama(
    out_dir: Path,
    seed: int,
    *,
    tie: bool = True,
    dtype: torch.dtype = torch.float32,
    layers: int = 2,
    hidden: int = 64,
    vocab: int = 512,
    tokenizer_dir: Path | None = None,
) -> Path:
    """A random tiny Llama (head_dim 32, so vLLM's CPU kernels run it) saved as an HF folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,
        num_key_value_heads=hidden // 32,
        head_dim=32,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(out_dir)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out_dir)
    return Path(out_dir)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_pair(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    """Two random tiny Llamas of one architecture: {"sft": dir, "aligned": dir} (fp32, tied)."""
    root = tmp_path_factory.mktemp("llama_pair")
    return {
        role: build_llama(root / role, seed, tokenizer_dir=tiny_tokenizer_dir)
        for role, seed in (("sft", 0), ("aligned", 1))
    }


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (ray.init costs ~5 s and ~850 MB)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
