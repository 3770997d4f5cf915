"""Reward-model scorer on a tiny LlamaForSequenceClassification built here (no network)."""
import json
import shutil

import pytest
import torch

from conftest import build_llama
from raysweep.config import ConfigError
from raysweep.score.reward_model import RewardModelScorer, RewardModelSpec

PROMPTS = [f"Topic: fruit | Count: {n} | Start: apple\nAnswer:" for n in range(2, 9)]
RESPONSES = [" good apple" + ", bright lamp" * k + "." for k in range(7)]


def _build_rm(out, tokenizer_dir, *, padding_side="right", pad=True):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=32,
                         max_position_embeddings=256, num_labels=1, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0 if pad else None)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # a visible spread of rewards
    model.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.padding_side = padding_side
    tok.save_pretrained(out)
    if not pad:
        cfg = json.loads((out / "tokenizer_config.json").read_text())
        cfg.pop("pad_token", None)
        (out / "tokenizer_config.json").write_text(json.dumps(cfg))
        special = out / "special_tokens_map.json"
        if special.exists():
            data = json.loads(special.read_text())
            data.pop("pad_token", None)
            special.write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def rm_dirs(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("rm")
    return {side: _build_rm(root / side, tiny_tokenizer_dir, padding_side=side)
            for side in ("left", "right")}


def _unpadded_rewards(folder):
    """Ground truth: each pair alone, no padding, straight through the model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for p, r in zip(PROMPTS, RESPONSES):
            ids = torch.tensor([tok(p + r)["input_ids"]])
            out.append(model(input_ids=ids).logits[0, 0].item())
    return out


def test_scores_are_batch_and_padding_side_invariant(rm_dirs):
    truth = _unpadded_rewards(rm_dirs["right"])
    assert max(truth) - min(truth) > 1e-2  # the pairs really score differently
    for side, folder in rm_dirs.items():
        for batch_size in (1, 7):
            scorer = RewardModelScorer(RewardModelSpec(path=str(folder), batch_size=batch_size))
            got = scorer.score(PROMPTS, RESPONSES)
            assert got["reward_truncated"] == [0.0] * 7
            assert got["reward"] == pytest.approx(truth, abs=1e-4), (side, batch_size)


def test_truncation_is_counted_not_crashed(rm_dirs):
    scorer = RewardModelScorer(RewardModelSpec(path=str(rm_dirs["right"]), max_length=12,
                                               column="rm", batch_size=4))
    got = scorer.score(PROMPTS[:3], ["x"] * 2 + [" good apple" * 40])
    assert set(got) == {"rm", "rm_truncated"}
    assert got["rm_truncated"][2] == 1.0
    assert all(v == v for v in got["rm"])  # finite, no crash


def test_causal_lm_folder_is_rejected_naming_the_folder(tiny_llama_pair):
    folder = tiny_llama_pair["sft"]
    with pytest.raises(ConfigError, match=rf"{folder}.*no classification head"):
        RewardModelScorer(RewardModelSpec(path=str(folder)))


def test_headless_weights_are_rejected(tmp_path, tiny_tokenizer_dir):
    # A config that claims a classification head over weights that have none (architectures unset).
    folder = build_llama(tmp_path / "base", 0, tokenizer_dir=tiny_tokenizer_dir)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=rf"{folder}: weights missing for \['score"):
        RewardModelScorer(RewardModelSpec(path=str(folder)))


def test_tokenizer_without_pad_falls_back_to_eos(tmp_path, tiny_tokenizer_dir, rm_dirs):
    folder = _build_rm(tmp_path / "nopad", tiny_tokenizer_dir, pad=False)
    scorer = RewardModelScorer(RewardModelSpec(path=str(folder), batch_size=7))
    assert scorer.tokenizer.pad_token is None and scorer.pad_id == 2  # eos
    batched = scorer.score(PROMPTS, RESPONSES)["reward"]
    single = RewardModelScorer(RewardModelSpec(path=str(folder), batch_size=1))
    assert batched == pytest.approx(single.score(PROMPTS, RESPONSES)["reward"], abs=1e-4)


def test_tokenizer_without_pad_or_eos_is_an_error(tmp_path, tiny_tokenizer_dir):
    folder = _build_rm(tmp_path / "noeos", tiny_tokenizer_dir, pad=False)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            data.pop("eos_token", None)
            path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="neither a pad token nor an eos token"):
        RewardModelScorer(RewardModelSpec(path=str(folder)))


def test_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="model folder not found"):
        RewardModelScorer(RewardModelSpec(path=str(tmp_path / "none")))


def test_chat_template_is_used_when_present(tmp_path, rm_dirs):
    folder = tmp_path / "chat"
    shutil.copytree(rm_dirs["right"], folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>"
                            "{% endfor %}")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    scorer = RewardModelScorer(RewardModelSpec(path=str(folder)))
    ids, _ = scorer.encode(["Hi"], ["there"])
    assert scorer.tokenizer.decode(ids[0]) == "<s>user: Hi</s><s>assistant: there</s>"
    plain = RewardModelScorer(RewardModelSpec(path=str(folder), use_chat_template=False))
    assert plain.tokenizer.decode(plain.encode(["Hi"], ["there"])[0][0]) == "Hithere"
