"""transformers backend on the tiny tied Llamas: padding, seeding, truncation, in-place weights."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from raysweep.config import ConfigError, validate
from raysweep.generate.base import SamplingSpec
from raysweep.generate.registry import make_backend
from raysweep.generate.spec import GenerationSpec
from conftest import build_llama

PROMPTS = [
    "Topic: fruit | Count: 3 | Start: apple\nAnswer:",
    "good",
    "Topic: animals | Count: 2 | Start: otter\nAnswer: good otter, bright lamp, calm",
    "calm river.",
]
GREEDY = SamplingSpec(temperature=0.0, max_new_tokens=12, use_chat_template=False)


def build_lively_pair(root: Path, tokenizer_dir: Path, scale: float = 8.0) -> dict[str, Path]:
    """Tied tiny Llamas whose attention/MLP projections are scaled up. The conftest pair at init
    scale greedily repeats the last prompt token whatever its weights (tied embeddings dominate),
    which would make token-equality checks vacuous; scaled, outputs depend on the weights."""
    from safetensors.torch import load_file, save_file

    pair = {}
    for role, seed in (("sft", 0), ("aligned", 1)):
        model_dir = build_llama(root / role, seed, tokenizer_dir=tokenizer_dir)
        weights = load_file(model_dir / "model.safetensors")
        weights = {k: v * scale if k.endswith("proj.weight") else v for k, v in weights.items()}
        save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
        pair[role] = model_dir
    return pair


@pytest.fixture(scope="module")
def lively_pair(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    return build_lively_pair(tmp_path_factory.mktemp("lively"), tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def sft(lively_pair):
    backend = make_backend(GenerationSpec(), lively_pair["sft"])
    yield backend
    backend.close()


def _ids(gens):
    return [g.token_ids for g in gens]


def test_left_padding_batch_invariance(sft):
    batched = sft.generate(PROMPTS, GREEDY)
    alone = [sft.generate([p], GREEDY)[0] for p in PROMPTS]
    assert _ids(batched) == _ids(alone)
    assert all(g.num_tokens == len(g.token_ids) > 0 for g in batched)
    assert [g.prompt_index for g in batched] == [0, 1, 2, 3]


def test_reseeded_per_call(sft):
    sampling = SamplingSpec(temperature=1.0, max_new_tokens=10, n=2, seed=7, use_chat_template=False)
    first = sft.generate(PROMPTS, sampling)
    torch.rand(100)  # caller's RNG traffic and an unrelated call must not matter
    sft.generate(PROMPTS[:1], sampling.model_copy(update={"seed": 8}))
    again = sft.generate(PROMPTS, sampling)
    other = sft.generate(PROMPTS, sampling.model_copy(update={"seed": 8}))
    assert _ids(first) == _ids(again)
    assert _ids(first) != _ids(other)


def test_n_samples_prompt_major(sft):
    sampling = SamplingSpec(temperature=1.0, max_new_tokens=10, n=3, use_chat_template=False)
    gens = sft.generate(PROMPTS[:2], sampling)
    assert [(g.prompt_index, g.sample_index) for g in gens] == [(p, s) for p in range(2) for s in range(3)]
    assert len({tuple(g.token_ids) for g in gens[:3]}) > 1  # samples of one prompt differ
    greedy = sft.generate(PROMPTS[:2], GREEDY.model_copy(update={"n": 2}))
    assert [g.token_ids for g in greedy[::2]] == [g.token_ids for g in greedy[1::2]]


def test_eos_counted_and_finished(sft):
    # near-uniform sampling: ~8k draws over a 512 vocab, so some responses hit EOS and some do not
    gens = sft.generate(PROMPTS, SamplingSpec(temperature=50.0, max_new_tokens=24, n=64, use_chat_template=False))
    eos = sft.tokenizer.eos_token_id
    assert 0 < sum(g.finished for g in gens) < len(gens)
    for g in gens:
        assert g.finished == (eos in g.token_ids)
        assert g.num_tokens == len(g.token_ids)
        if g.finished:
            assert g.token_ids.index(eos) == len(g.token_ids) - 1
        else:
            assert g.num_tokens == 24


def test_long_prompt_truncated_and_flagged(lively_pair):
    backend = make_backend(GenerationSpec(max_model_len=32), lively_pair["sft"])
    long_prompt = " ".join(PROMPTS * 6)
    gens = backend.generate([long_prompt, PROMPTS[1]], GREEDY.model_copy(update={"max_new_tokens": 8}))
    assert [g.prompt_truncated for g in gens] == [True, False]
    assert all(g.num_tokens > 0 for g in gens)
    # left truncation keeps the prompt's end: same output as the last 24 tokens given directly
    tail = backend.tokenizer.decode(backend.tokenizer(long_prompt)["input_ids"][-24:])
    assert backend.generate([tail], GREEDY.model_copy(update={"max_new_tokens": 8}))[0].token_ids == gens[0].token_ids
    with pytest.raises(ConfigError, match="max_new_tokens"):
        backend.generate(PROMPTS, GREEDY.model_copy(update={"max_new_tokens": 32}))


def test_tokenizer_without_pad_token(tiny_llama_pair, tmp_path):
    from transformers import AutoTokenizer

    model_dir = tmp_path / "nopad"
    shutil.copytree(tiny_llama_pair["sft"], model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = None
    tok.save_pretrained(model_dir)
    backend = make_backend(GenerationSpec(), model_dir)
    assert backend.tokenizer.pad_token_id == backend.tokenizer.eos_token_id
    assert len(backend.generate(PROMPTS, GREEDY)) == len(PROMPTS)

    tok.eos_token = None
    tok.save_pretrained(model_dir)
    with pytest.raises(ConfigError, match="nopad.*no pad token and no eos"):
        make_backend(GenerationSpec(), model_dir)


def test_weight_target_writes_are_live(lively_pair):
    from safetensors.torch import load_file

    backend = make_backend(GenerationSpec(), lively_pair["sft"])
    aligned = make_backend(GenerationSpec(), lively_pair["aligned"])
    expected = _ids(aligned.generate(PROMPTS, GREEDY))
    assert _ids(backend.generate(PROMPTS, GREEDY)) != expected

    targets = backend.weight_targets()
    source = load_file(lively_pair["aligned"] / "model.safetensors")
    assert set(targets) == set(source) and "lm_head.weight" not in targets  # tied: written once
    for name, tensor in source.items():
        targets[name].copy_(tensor)
    backend.model.train()
    backend.commit_weights()
    assert not backend.model.training
    assert torch.equal(backend.model.lm_head.weight, source["model.embed_tokens.weight"])
    assert _ids(backend.generate(PROMPTS, GREEDY)) == expected


def test_weight_targets_one_flat_buffer_merged_in_runs(lively_pair, monkeypatch):
    """Parameters are repacked as views of one buffer in the checkpoint's order, still tied; an
    in-place merge over them is one kernel call per run of equal coefficients, and live."""
    import raysweep.merge.engine as engine
    from raysweep.merge.coefficients import CoefficientTable
    from raysweep.merge.engine import InPlaceMerger

    backend = make_backend(GenerationSpec(), lively_pair["sft"])
    before = _ids(backend.generate(PROMPTS, GREEDY))
    targets = backend.weight_targets()
    assert len({t.untyped_storage().data_ptr() for t in targets.values()}) == 1
    params = dict(backend.model.named_parameters())
    assert all(params[n].data_ptr() == t.data_ptr() for n, t in targets.items())
    assert backend.model.lm_head.weight is backend.model.model.embed_tokens.weight
    assert _ids(backend.generate(PROMPTS, GREEDY)) == before  # repacking kept the values

    merger = InPlaceMerger({"aligned": lively_pair["aligned"], "sft": lively_pair["sft"]}, fused=False)
    calls = []
    real = engine.combine_into
    monkeypatch.setattr(engine, "combine_into", lambda *a, **k: calls.append(1) or real(*a, **k))
    groups = {merger.group(n) for n in merger.names}
    merger.apply(CoefficientTable(("aligned", "sft"), {g: (1.0, 0.0) for g in groups}), targets)
    assert len(calls) == 1  # one file, one layout, one coefficient pair: the whole model at once
    backend.commit_weights()
    aligned = make_backend(GenerationSpec(), lively_pair["aligned"])
    assert _ids(backend.generate(PROMPTS, GREEDY)) == _ids(aligned.generate(PROMPTS, GREEDY))


def test_unknown_backend_lists_valid_names(tiny_llama_pair):
    with pytest.raises(ConfigError, match="unknown backend 'tgi'; valid: transformers, vllm"):
        validate(GenerationSpec, {"backend": "tgi"}, "cfg.yaml")
    spec = GenerationSpec.model_construct(backend="tgi")  # bypasses validation, as a stale object might
    with pytest.raises(ConfigError, match="valid: transformers, vllm"):
        make_backend(spec, tiny_llama_pair["sft"])
