import json

import pytest

from raysweep.config import ConfigError
from raysweep.prompts import PromptSetSpec, load_prompts

ROWS = [
    {"id": f"q{i}", "instruction": f"Question {i}?", "gold": f"Answer {i}.", "n": i} for i in range(5)
]


@pytest.fixture()
def jsonl(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_jsonl_with_column_mapping_and_limit(jsonl):
    spec = PromptSetSpec(path=str(jsonl), prompt_column="instruction", id_column="id",
                         reference_column="gold", limit=3)
    ps = load_prompts(spec)
    assert ps.ids == ["q0", "q1", "q2"]
    assert ps.prompts == ["Question 0?", "Question 1?", "Question 2?"]
    assert ps.references == ["Answer 0.", "Answer 1.", "Answer 2."]
    assert len(ps) == 3


def test_json_and_parquet_default_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "x"}, {"prompt": "y"}]))
    pq.write_table(pa.table({"prompt": ["p", "q", "r"]}), tmp_path / "b.parquet")
    a = load_prompts(PromptSetSpec(path=str(tmp_path / "a.json")))
    b = load_prompts(PromptSetSpec(path=str(tmp_path / "b.parquet")))
    assert (a.ids, a.prompts, a.references) == (["0", "1"], ["x", "y"], None)
    assert (b.ids, b.prompts) == (["0", "1", "2"], ["p", "q", "r"])


def test_missing_column_lists_the_columns_present(jsonl):
    with pytest.raises(ConfigError, match=r"prompt_column: column 'prompt' not in .*columns present: "
                                          r"id, instruction, gold, n"):
        load_prompts(PromptSetSpec(path=str(jsonl)))
    with pytest.raises(ConfigError, match="reference_column: column 'answer'"):
        load_prompts(PromptSetSpec(path=str(jsonl), prompt_column="instruction",
                                   reference_column="answer"))


def test_empty_set_is_an_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), tmp_path / "e.parquet")
    with pytest.raises(ConfigError, match="has no rows"):
        load_prompts(PromptSetSpec(path=str(tmp_path / "e.parquet")))
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="has no rows"):
        load_prompts(PromptSetSpec(path=str(tmp_path / "e.jsonl")))


def test_missing_file_without_hub_and_non_text_prompts(tmp_path, jsonl):
    with pytest.raises(ConfigError, match="file not found.*allow_hub"):
        load_prompts(PromptSetSpec(path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match="row 0 of column 'n' is int, expected text"):
        load_prompts(PromptSetSpec(path=str(jsonl), prompt_column="n"))


def test_duplicate_ids_and_unknown_split(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "id": 1}\n{"prompt": "b", "id": 1}\n')
    with pytest.raises(ConfigError, match="duplicate id '1'"):
        load_prompts(PromptSetSpec(path=str(path), id_column="id"))
    with pytest.raises(ConfigError, match="prompts.path: cannot load"):
        load_prompts(PromptSetSpec(path=str(path), split="test[:5"))
