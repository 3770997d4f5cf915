import pytest
from pydantic import BaseModel

from raysweep.config import ConfigError
from raysweep.score.registry import SCORERS, make_scorer, parse_scorer
from raysweep.score.rules import RulesScorer, RulesSpec


def test_every_registered_spec_and_scorer_resolves_and_defaults_its_name():
    import importlib

    for name, (spec_target, scorer_target) in SCORERS.items():
        spec_cls = getattr(importlib.import_module(spec_target.split(":")[0]), spec_target.split(":")[1])
        scorer_mod, scorer_cls = scorer_target.split(":")
        assert hasattr(importlib.import_module(scorer_mod), scorer_cls), scorer_target
        assert spec_cls.model_fields["name"].default == name


def test_parse_scorer_dispatches_on_name():
    spec = parse_scorer({"name": "rules", "rules": [{"column": "n", "kind": "length"}]}, "cfg.yaml")
    assert isinstance(spec, RulesSpec)
    assert isinstance(parse_scorer({"name": "reward_model", "path": "rm"}), BaseModel)
    scorer = make_scorer(spec)
    assert isinstance(scorer, RulesScorer)
    assert scorer.score(["p"], ["a b c"]) == {"n": [3.0]}
    assert make_scorer({"name": "demo_task"}).name == "demo_task"


def test_unknown_or_missing_name_lists_the_valid_names():
    valid = "demo_task, lmeval, pairrm, reward_model, rules"
    with pytest.raises(ConfigError, match=f"cfg.yaml: name: unknown scorer 'bleu'; valid: {valid}$"):
        parse_scorer({"name": "bleu"}, "cfg.yaml")
    with pytest.raises(ConfigError, match=f"name: required key missing; valid scorers: {valid}$"):
        parse_scorer({"path": "x"}, "cfg.yaml")


def test_field_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"^cfg.yaml: reward_model.batch_sise: unknown key$"):
        parse_scorer({"name": "reward_model", "path": "rm", "batch_sise": 4}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"^cfg.yaml: pairrm.path: required key missing$"):
        parse_scorer({"name": "pairrm"}, "cfg.yaml")


def test_scorer_spec_union_validates_inside_another_spec():
    from raysweep.config import Spec, validate
    from raysweep.score.registry import ScorerSpec

    class Holder(Spec):
        scorers: list[ScorerSpec]

    held = validate(Holder, {"scorers": [{"name": "demo_task"}, {"name": "lmeval",
                                          "include_path": "x", "tasks": ["t"]}]}, "h")
    assert [s.name for s in held.scorers] == ["demo_task", "lmeval"]
    with pytest.raises(ConfigError, match="does not match any of the expected tags: 'reward_model'"):
        validate(Holder, {"scorers": [{"name": "nope"}]}, "h")
