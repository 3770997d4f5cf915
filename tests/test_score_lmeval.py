"""lm-eval on the live in-memory tiny Llama, a local multiple-choice task, no network."""
import json

import pytest
import torch

from raysweep.config import ConfigError
from raysweep.score.lmeval import LMEvalBenchmark, LMEvalSpec, flatten_results, metric_key

NOUNS = ["apple", "hammer", "otter", "green", "lamp", "river"]
ITEMS = [
    {"question": f"Topic: fruit | Count: {n} | Start: {NOUNS[n % 6]}\nAnswer: good",
     "choices": [NOUNS[(n + k) % 6] for k in range(3)], "answer": n % 3}
    for n in range(10)
]
TASK_YAML = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval_tasks")
    data = root / "items.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    (root / "tiny_mc.yaml").write_text(TASK_YAML.format(data=data))
    return root


@pytest.fixture(scope="module")
def live(tiny_llama_pair):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_llama_pair["sft"]
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def manual_accuracy(model, tok, items):
    """Argmax over choices of sum log p(" " + choice | question), as lm-eval defines acc."""
    correct = []
    with torch.no_grad():
        for item in items:
            ctx = tok(item["question"])["input_ids"]
            scores = []
            for choice in item["choices"]:
                whole = tok(item["question"] + " " + choice)["input_ids"]
                cont = whole[len(ctx):]
                logp = torch.log_softmax(model(torch.tensor([whole[:-1]])).logits[0].float(), -1)
                scores.append(sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)))
            correct.append(float(max(range(len(scores)), key=lambda i: (scores[i], -i))
                                 == item["answer"]))
    return sum(correct) / len(correct)


@pytest.mark.slow  # lm-eval import + two harness runs: ~15-20 s on a shared 2-core machine
def test_accuracy_on_the_live_model_matches_manual_loglikelihoods(task_dir, live):
    model, tok = live
    padding_side = tok.padding_side
    bench = LMEvalBenchmark(LMEvalSpec(include_path=str(task_dir), tasks=["tiny_mc"], limit=6,
                                       batch_size=4))
    got = bench.evaluate(model, tok)
    assert set(got) == {"lmeval/tiny_mc/acc"}
    assert got["lmeval/tiny_mc/acc"] == pytest.approx(manual_accuracy(model, tok, ITEMS[:6]))
    assert tok.padding_side == padding_side and not model.training

    # In place: new weights in the same live model change the result without a reload.
    full = LMEvalBenchmark(LMEvalSpec(include_path=str(task_dir), tasks=["tiny_mc"]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    assert full.evaluate(model, tok)["lmeval/tiny_mc/acc"] == pytest.approx(
        manual_accuracy(model, tok, ITEMS))


def test_unknown_task_and_missing_folder(task_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"lmeval.tasks: \['nope'\] not defined .*known: tiny_mc"):
        LMEvalBenchmark(LMEvalSpec(include_path=str(task_dir), tasks=["nope"])).task_manager()
    with pytest.raises(ConfigError, match="include_path: folder not found"):
        LMEvalBenchmark(LMEvalSpec(include_path=str(tmp_path / "none"), tasks=["x"]))


def test_metric_keys():
    assert metric_key("t", "acc,none") == "lmeval/t/acc"
    assert metric_key("t", "exact_match,strict") == "lmeval/t/exact_match_strict"
    assert flatten_results({"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A"}}) == {
        "lmeval/t/acc": 0.5}
