import pyarrow.parquet as pq

from raysweep.results import read_table, table_path, trial_key, write_json, write_rows


def test_trial_key_is_stable_and_readable():
    assert trial_key({"alpha": 0.5}) == trial_key({"alpha": 0.5})
    assert trial_key({"alpha": 0.5}) != trial_key({"alpha": 0.25})
    assert trial_key({"alpha": 0.5}).startswith("alpha=0.5-")
    assert trial_key({"b": 1, "a": 2}) == trial_key({"a": 2, "b": 1})


def test_rewrite_of_same_trial_and_rung_overwrites_not_duplicates(tmp_path):
    run = str(tmp_path / "run")
    key = trial_key({"alpha": 1.0})
    write_rows([{"trial": key, "rung": 0, "reward": 0.1}], table_path(run, "trials", key, 0))
    write_rows([{"trial": key, "rung": 0, "reward": 0.2}], table_path(run, "trials", key, 0))
    other = trial_key({"alpha": 2.0})
    write_rows([{"trial": other, "rung": 0, "reward": 0.3, "extra": "x"}],
               table_path(run, "trials", other, 0))
    table = read_table(run, "trials")
    rows = sorted(table.to_pylist(), key=lambda r: r["reward"])
    assert [r["reward"] for r in rows] == [0.2, 0.3]
    assert rows[0]["extra"] is None  # schemas unified across files
    leftovers = [p for p in (tmp_path / "run").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_files_are_plain_parquet_and_missing_table_is_empty(tmp_path):
    run = str(tmp_path / "run")
    path = table_path(run, "samples", "k", 3)
    write_rows([{"prompt_id": "p1", "response": "hi", "seed": 0}], path)
    assert path.endswith("samples/k/rung-003.parquet")
    assert pq.read_table(path).to_pylist() == [{"prompt_id": "p1", "response": "hi", "seed": 0}]
    assert read_table(run, "trials").num_rows == 0
    write_json({"a": 1}, f"{run}/best.json")
    assert (tmp_path / "run" / "best.json").read_text().strip().startswith("{")
