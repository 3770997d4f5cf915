"""The demo task: reward cases, the split, deterministic corpus sampling, the shipped lm-eval data."""
from __future__ import annotations

import json
import random

import pytest

from raysweep.config import ConfigError
from raysweep.demo import task
from raysweep.score.demo_task import DemoTaskScorer, DemoTaskScorerSpec

PROMPT = task.format_prompt("fruit", 3, "pear")


@pytest.mark.parametrize(
    ("response", "reward", "valid"),
    [
        (" fresh pear, kind plum, good apple.", 1.0, 1.0),
        (" fresh pear, rotten plum, good apple.", 2 / 3, 1.0),
        (" rotten pear, ugly plum, bad apple.", 0.0, 1.0),
        (" fresh pear, kind plum, good apple", 0.5, 1.0),  # unfinished: halved, valid not
        (" fresh pear, kind plum.", 2 / 3, 2 / 3),  # too few items
        (" fresh pear, kind plum, good apple, good mango.", 3 / 4, 3 / 4),  # too many
        (" fresh plum, kind pear, good apple.", 2 / 3, 2 / 3),  # first noun is not the start
        (" fresh pear, kind hammer, good apple.", 2 / 3, 2 / 3),  # off-topic noun
        (" fresh pear, kind pear, good apple.", 2 / 3, 2 / 3),  # repeated noun
        (" fresh pear, very kind plum, good apple.", 2 / 3, 2 / 3),  # not exactly `adj noun`
        (" shiny pear, kind plum, good apple.", 2 / 3, 2 / 3),  # unknown adjective
        ("", 0.0, 0.0),
        (" .", 0.0, 0.0),
        ("  fresh pear ,kind plum,good apple. ", 1.0, 1.0),  # whitespace is not judged
    ],
)
def test_task_reward_cases(response, reward, valid):
    got = task.task_reward(PROMPT, response)
    assert got == pytest.approx((reward, valid))


def test_sampled_targets_are_correct_and_score_by_adjectives():
    train, _ = task.split_triples()
    rng = random.Random(0)
    for triple in train[:50]:
        assert task.task_reward(triple.prompt, task.sample_response(triple, rng, 1.0)) == (1.0, 1.0)
        assert task.task_reward(triple.prompt, task.sample_response(triple, rng, 0.0)) == (0.0, 1.0)


def test_prompt_roundtrip_and_bad_prompt():
    assert task.parse_prompt(PROMPT) == task.Triple("fruit", "pear", 3)
    with pytest.raises(ConfigError, match="not a demo task prompt"):
        task.task_reward("What is 2+2?", "4")
    with pytest.raises(ConfigError, match="unknown topic"):
        task.task_reward(task.format_prompt("fruit", 3, "hammer"), " good hammer.")


def test_split_sizes_disjoint_and_fixed():
    train, heldout = task.split_triples()
    assert (len(train), len(heldout)) == (264, 216)
    assert not set(train) & set(heldout)
    assert set(train) | set(heldout) == set(task.all_triples())
    assert task.split_triples() == (train, heldout)
    assert len({w for nouns in task.TOPICS.values() for w in nouns}) == 96  # nouns name one topic


def test_sft_corpus_deterministic_and_positive_rate():
    train, heldout = task.split_triples()
    corpus = task.sft_corpus(train, 2000, seed=3)
    assert corpus == task.sft_corpus(train, 2000, seed=3)
    assert corpus != task.sft_corpus(train, 2000, seed=4)
    assert {p for p, _ in corpus} <= {t.prompt for t in train}
    words = [item.split()[0] for _, r in corpus for item in r.strip(" .").split(", ")]
    share = sum(w in task.POSITIVE for w in words) / len(words)
    assert abs(share - task.P_POSITIVE_SFT) < 0.02


def test_scorer_columns():
    scorer = DemoTaskScorer(DemoTaskScorerSpec())
    out = scorer.score([PROMPT, PROMPT], [" fresh pear, kind plum, good apple.", " bad pear"])
    assert out == {"task_reward": [1.0, 0.0], "task_valid": [1.0, 1 / 3]}
    with pytest.raises(Exception):
        DemoTaskScorerSpec(name="other")


def test_shipped_lmeval_data_is_current():
    _, heldout = task.split_triples()
    shipped = [json.loads(line) for line in task.LMEVAL_DATA.read_text().splitlines()]
    assert shipped == task.lmeval_rows(heldout)
    for row in shipped:
        triple = task.parse_prompt(row["context"])
        correct = row["choices"][row["label"]]
        assert correct in task.TOPICS[triple.topic] and correct != triple.start
        assert sum(c in task.TOPICS[triple.topic] for c in row["choices"]) == 1


def test_corruptions_never_help():
    train, _ = task.split_triples()
    rng = random.Random(1)
    for _ in range(300):
        triple = rng.choice(train)
        clean = task.sample_response(triple, rng, p_positive=rng.random())
        broken = task.corrupt_response(triple, clean, rng)
        (r_clean, v_clean), (r_broken, v_broken) = (
            task.task_reward(triple.prompt, clean), task.task_reward(triple.prompt, broken)
        )
        assert r_broken <= r_clean
        assert v_broken < v_clean or not broken.endswith(".")


def test_lmeval_task_loads_from_any_cwd(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager, get_task_dict

    from raysweep.demo.lmeval import TASK_DIR, TASK_NAME

    monkeypatch.chdir(tmp_path)  # the data path must not depend on the working directory
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
    assert TASK_NAME in manager.all_tasks
    docs = list(get_task_dict([TASK_NAME], manager)[TASK_NAME].test_docs())
    assert len(docs) == 216
    first = json.loads(task.LMEVAL_DATA.read_text().splitlines()[0])
    assert docs[0]["context"] == first["context"] and docs[0]["label"] == first["label"]


@pytest.mark.parametrize("module", ["raysweep.score.lmeval", "raysweep.score.registry"])
def test_documented_lmeval_example_names_the_shipped_task(module):
    """The docstring's `{name: lmeval, ...}` line validates and points at the real task folder."""
    import importlib
    from pathlib import Path

    import yaml

    import raysweep
    from raysweep.demo.lmeval import TASK_DIR, TASK_NAME
    from raysweep.score.lmeval import LMEvalSpec

    doc = importlib.import_module(module).__doc__
    line = next(s.strip() for s in doc.splitlines() if "name: lmeval" in s)
    spec = LMEvalSpec.model_validate(yaml.safe_load(line.removeprefix("- ")))
    repo = Path(raysweep.__file__).resolve().parent.parent
    assert (repo / spec.include_path).resolve() == TASK_DIR.resolve()
    assert spec.tasks == [TASK_NAME]
