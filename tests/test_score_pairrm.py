"""PairRM scorer on a tiny llm-blender DebertaV2PairRM built here with a local tokenizer."""
import json

import pytest
import torch

from conftest import build_tokenizer
from raysweep.config import ConfigError
from raysweep.score.pairrm import PairRMScorer, PairRMSpec, import_llm_blender

# Importing llm-blender costs ~10 s (its package imports vllm, sklearn, ...): marked slow.
pytestmark = pytest.mark.slow

PREFIXES = ["<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"]
PROMPTS = [f"Topic: {t} | Count: 3 | Start: apple\nAnswer:" for t in ("fruit", "tools", "animals")]
A = [" good apple, bright lamp.", " calm river", " otter, green hammer, good apple, calm river."]
B = [" bright hammer.", " good apple, calm river, bright lamp.", " apple"]


def build_tiny_pairrm(out):
    """Same class and file layout as llm-blender/PairRM-hf, with a 2-layer hidden-32 DeBERTa-v2."""
    from tokenizers import processors
    from transformers import DebertaV2Config

    model_cls, _ = import_llm_blender()
    tok = build_tokenizer(out)
    # DeBERTa's tokenizer wraps every encode in [CLS] ... [SEP]; ours uses <s> ... </s>.
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    tok.add_special_tokens({"cls_token": "<s>", "sep_token": "</s>",
                            "additional_special_tokens": PREFIXES})
    ids = tok.convert_tokens_to_ids(PREFIXES)
    config = DebertaV2Config(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, relative_attention=True,
        position_buckets=64, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        pad_token_id=0, initializer_range=0.3, n_tasks=1, drop_out=0.05, sep_token_id=2,
        source_prefix_id=ids[0], cand1_prefix_id=ids[1], cand2_prefix_id=ids[2],
        cand_prefix_id=ids[3], architectures=["DebertaV2PairRM"])
    torch.manual_seed(0)
    model_cls(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def pairrm_dir(tmp_path_factory):
    return build_tiny_pairrm(tmp_path_factory.mktemp("pairrm"))


@pytest.fixture(scope="module")
def scorer(pairrm_dir):
    return PairRMScorer(PairRMSpec(path=str(pairrm_dir), batch_size=2))


def test_win_rates_are_order_symmetric(scorer):
    ab = scorer.score(PROMPTS, A, references=B)
    ba = scorer.score(PROMPTS, B, references=A)
    assert ab["pairrm_logit"] == pytest.approx([-x for x in ba["pairrm_logit"]], abs=1e-6)
    assert min(abs(x) for x in ab["pairrm_logit"]) > 1e-4  # real decisions, not ties
    assert [w + v for w, v in zip(ab["pairrm_win"], ba["pairrm_win"])] == [1.0, 1.0, 1.0]


def test_identical_response_is_a_tie(scorer):
    got = scorer.score(PROMPTS, A, references=A)
    assert got["pairrm_win"] == [0.5, 0.5, 0.5]
    assert got["pairrm_logit"] == pytest.approx([0.0] * 3, abs=1e-6)


def test_single_order_is_position_biased_and_both_orders_cancel_it(scorer):
    # One order alone is not antisymmetric (PairRM sees which slot a candidate is in) ...
    first = scorer.first_minus_second(PROMPTS, A, A)
    assert max(abs(x) for x in first) > 1e-4
    # ... and the batch size does not change the averaged logits.
    wide = PairRMScorer(PairRMSpec(path=scorer.spec.path, batch_size=8)).score(PROMPTS, A, B)
    assert wide["pairrm_logit"] == pytest.approx(scorer.score(PROMPTS, A, B)["pairrm_logit"], abs=1e-5)


def test_needs_references_and_a_pairrm_folder(scorer, tmp_path, tiny_llama_pair):
    with pytest.raises(ConfigError, match="needs reference responses"):
        scorer.score(PROMPTS, A)
    with pytest.raises(ConfigError, match=r"architectures \['LlamaForCausalLM'\], expected"):
        PairRMScorer(PairRMSpec(path=str(tiny_llama_pair["sft"])))
    (tmp_path / "config.json").write_text(json.dumps({"ranker_type": "pairranker"}))
    with pytest.raises(ConfigError, match="RankerConfig layout"):
        PairRMScorer(PairRMSpec(path=str(tmp_path)))
