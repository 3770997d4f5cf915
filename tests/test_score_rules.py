import pytest

from raysweep.config import ConfigError, validate
from raysweep.score.rules import RulesScorer, RulesSpec

RESPONSES = ["The answer is #### 42", "#### 7.", "I don't know", "yes"]
REFS = ["42", "8", "I don't know", "Yes"]


def _scorer(rules):
    return RulesScorer(validate(RulesSpec, {"rules": rules}, "test"))


def test_regex_search_fullmatch_and_reference_extraction():
    got = _scorer([
        {"column": "has", "kind": "regex", "pattern": r"####\s*\d+"},
        {"column": "ok", "kind": "regex", "pattern": r"####\s*(\d+)", "compare": "reference"},
        {"column": "full", "kind": "regex", "pattern": r"y\w+", "match": "fullmatch",
         "ignore_case": True},
    ]).score(["p"] * 4, RESPONSES, references=REFS)
    assert got == {"has": [1.0, 1.0, 0.0, 0.0], "ok": [1.0, 0.0, 0.0, 0.0],
                   "full": [0.0, 0.0, 0.0, 1.0]}


def test_exact_against_target_or_reference():
    got = _scorer([
        {"column": "ref", "kind": "exact"},
        {"column": "ref_ci", "kind": "exact", "ignore_case": True},
        {"column": "yes", "kind": "exact", "target": "Yes", "ignore_case": True},
    ]).score(["p"] * 4, RESPONSES, references=REFS)
    assert got == {"ref": [0.0, 0.0, 1.0, 0.0], "ref_ci": [0.0, 0.0, 1.0, 1.0],
                   "yes": [0.0, 0.0, 0.0, 1.0]}


def test_length_values_and_bounds():
    got = _scorer([
        {"column": "words", "kind": "length"},
        {"column": "chars", "kind": "length", "unit": "chars"},
        {"column": "short", "kind": "length", "unit": "words", "max": 2},
        {"column": "mid", "kind": "length", "unit": "chars", "min": 4, "max": 12},
    ]).score(["p"] * 4, RESPONSES)
    assert got["words"] == [5.0, 2.0, 3.0, 1.0]
    assert got["chars"] == [float(len(r)) for r in RESPONSES]
    assert got["short"] == [0.0, 1.0, 0.0, 1.0]
    assert got["mid"] == [0.0, 1.0, 1.0, 0.0]


def test_reference_rules_without_references_is_a_config_error():
    scorer = _scorer([{"column": "ok", "kind": "exact"}])
    with pytest.raises(ConfigError, match=r"rules\[0\] \(ok\).*no.*reference"):
        scorer.score(["p"], ["x"])


@pytest.mark.parametrize("rules, message", [
    ([{"column": "a", "kind": "regex", "pattern": "("}], "invalid regular expression"),
    ([{"column": "a", "kind": "fuzzy"}], "kind"),
    ([{"column": "a", "kind": "length"}, {"column": "a", "kind": "length"}], "duplicate column 'a'"),
    ([{"column": "a", "kind": "length", "min": 3, "max": 1}], "min 3.0 > max 1.0"),
    ([], "at least 1"),
])
def test_bad_rules_are_one_line_config_errors(rules, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate(RulesSpec, {"rules": rules}, "cfg.yaml")
    assert "\n" not in str(err.value)
