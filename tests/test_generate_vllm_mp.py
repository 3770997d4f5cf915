"""The same swap-equality check through vLLM's multiprocessing engine (engine core and worker in
their own processes), where the weights cross a process boundary as (dtype, shape, bytes)."""
from __future__ import annotations

import pytest

from raysweep.generate.registry import make_backend
from raysweep.generate.spec import GenerationSpec
from test_generate_hf import PROMPTS, build_lively_pair
from test_generate_vllm import VLLM_SPEC, assert_swaps_match

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
pytest.importorskip("vllm")


def test_multiprocess_engine_swaps_match_transformers(tmp_path_factory, tiny_tokenizer_dir):
    pair = build_lively_pair(tmp_path_factory.mktemp("lively_mp"), tiny_tokenizer_dir)
    vllm_backend = make_backend(GenerationSpec(**{**VLLM_SPEC, "multiprocessing": True}), pair["sft"])
    hf_backend = make_backend(GenerationSpec(), pair["sft"])
    prompts = PROMPTS + [" ".join(PROMPTS * 5)]
    try:
        assert_swaps_match(vllm_backend, hf_backend, pair, prompts, (0.5, 0.0))
    finally:
        vllm_backend.close()
        hf_backend.close()
