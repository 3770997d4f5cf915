"""Prompt sets (and optional reference responses) loaded through `datasets`, with column mapping.

    prompts:
      path: data/eval.jsonl          # local .json / .jsonl / .parquet / .csv file, or a folder of them
      prompt_column: instruction     # default "prompt"
      id_column: id                  # optional; default: the row number
      reference_column: gpt4_output  # optional: reference responses for pairwise / exact scorers
      limit: 200                     # optional: the first N rows
      # allow_hub: true              # `path` may name a hub dataset (used only if no such file)

Every failure is a one-line ConfigError naming the field or file: a missing file, a missing column
(the columns present are listed), a non-text value, duplicate ids, an empty set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from raysweep.config import ConfigError, Spec

_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class PromptSetSpec(Spec):
    """`prompts:` in a config. Paths are local unless `allow_hub` lets `path` name a hub dataset."""

    path: str
    split: str = "train"  # a single local file is split "train"
    prompt_column: str = "prompt"
    id_column: str | None = None
    reference_column: str | None = None
    limit: int | None = Field(default=None, ge=1)
    allow_hub: bool = False


@dataclass
class PromptSet:
    """Parallel lists, one entry per prompt. `references` is None without a reference column."""

    ids: list[str]
    prompts: list[str]
    references: list[str] | None = None

    def __len__(self) -> int:
        return len(self.prompts)


def _has_no_rows(path: Path, fmt: str) -> bool:
    """True for a local file that holds no rows (datasets fails on those with obscure errors)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows == 0
    if path.stat().st_size > 4096:
        return False
    text = path.read_text(errors="replace").strip()
    if fmt == "csv":
        return len([line for line in text.splitlines() if line.strip()]) < 2
    return text in ("", "[]")


def _open(spec: PromptSetSpec):
    """The `datasets.Dataset` for `spec` (arrow, in memory)."""
    import datasets

    path = Path(spec.path)
    try:
        if path.is_file():
            fmt = _FORMATS.get("".join(path.suffixes[-1:]).lower())
            if fmt is None:
                raise ConfigError(
                    f"prompts.path: {path}: unsupported file type; expected one of "
                    f"{', '.join(sorted(_FORMATS))}"
                )
            if _has_no_rows(path, fmt):
                raise ConfigError(f"prompts.path: {spec.path} has no rows")
            return datasets.load_dataset(
                fmt, data_files={spec.split: str(path)}, split=spec.split, keep_in_memory=True
            )
        if path.is_dir():
            return datasets.load_dataset(str(path), split=spec.split, keep_in_memory=True)
        if not spec.allow_hub:
            raise ConfigError(
                f"prompts.path: file not found: {spec.path} (set prompts.allow_hub: true to load "
                f"a hub dataset of that name)"
            )
        return datasets.load_dataset(spec.path, split=spec.split)
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many types (bad split, bad JSON, offline hub)
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"prompts.path: cannot load {spec.path} split {spec.split!r}: {msg}") from None


def _require_column(ds, column: str, field: str) -> None:
    if column not in ds.column_names:
        raise ConfigError(
            f"prompts.{field}: column {column!r} not in the prompt set; columns present: "
            f"{', '.join(ds.column_names)}"
        )


def _text_column(ds, column: str, field: str) -> list[str]:
    _require_column(ds, column, field)
    values = ds[column]
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ConfigError(
                f"prompts.{field}: row {i} of column {column!r} is {type(value).__name__}, expected text"
            )
    return list(values)


def load_prompts(spec: PromptSetSpec) -> PromptSet:
    """Load the prompt set: the first `limit` rows of `split`, columns mapped by the spec."""
    ds = _open(spec)
    if spec.limit is not None and len(ds) > spec.limit:
        ds = ds.select(range(spec.limit))
    if len(ds) == 0:
        raise ConfigError(f"prompts.path: {spec.path} split {spec.split!r} has no rows")
    prompts = _text_column(ds, spec.prompt_column, "prompt_column")
    if spec.id_column is None:
        ids = [str(i) for i in range(len(prompts))]
    else:
        _require_column(ds, spec.id_column, "id_column")
        ids = [str(v) for v in ds[spec.id_column]]
        seen: set[str] = set()
        for value in ids:
            if value in seen:
                raise ConfigError(f"prompts.id_column: duplicate id {value!r} in column {spec.id_column!r}")
            seen.add(value)
    references = None
    if spec.reference_column is not None:
        references = _text_column(ds, spec.reference_column, "reference_column")
    return PromptSet(ids=ids, prompts=prompts, references=references)
