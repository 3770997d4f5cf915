"""Arrow result tables: one Parquet file per (run, trial, rung), written exactly once.

Layout of a run folder (local path or any URI pyarrow.fs understands, e.g. s3://bucket/runs/x):

    <run>/trials/<trial_key>/rung-<k>.parquet    one row: config, metric means + CIs, timings, seed
    <run>/samples/<trial_key>/rung-<k>.parquet   one row per (prompt, sample): response and scores

A file is written under a temporary name and renamed, and its name is a pure function of the trial's
config and rung, so a retried or resumed trial overwrites its file instead of adding a duplicate.
Any reader (pyarrow, DuckDB, pandas) sees one table per kind: `read_table(run, "trials")`.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Callable

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TABLES = ("trials", "samples")


def trial_key(params: dict[str, Any]) -> str:
    """Stable, readable key of a trial config, e.g. `alpha=0.5-3f2a9c1d`."""
    canonical = json.dumps(params, sort_keys=True, default=str)
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    label = "-".join(f"{k}={v}" for k, v in sorted(params.items()) if isinstance(v, (int, float, str)))
    label = "".join(c if c.isalnum() or c in "=.-_" else "_" for c in label)[:48]
    return f"{label}-{digest}" if label else digest


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def table_path(run_dir: str, table: str, key: str, rung: int) -> str:
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    return join(run_dir, table, key, f"rung-{rung:03d}.parquet")


def _atomic_write(path: str, write: Callable[[pafs.FileSystem, str], None]) -> None:
    """Write via `write(fs, temp_path)` to a temp name in the target folder, then rename over `path`."""
    fs, target = _filesystem(path)
    folder = target.rsplit("/", 1)[0]
    fs.create_dir(folder, recursive=True)
    temp = f"{folder}/.tmp-{uuid.uuid4().hex}"
    try:
        write(fs, temp)
        fs.move(temp, target)
    except BaseException:
        if fs.get_file_info(temp).type != pafs.FileType.NotFound:
            fs.delete_file(temp)
        raise


def write_rows(rows: list[dict[str, Any]], path: str) -> None:
    """Write rows as one Parquet file at `path` (temp name in the same folder, then rename)."""
    _atomic_write(path, lambda fs, temp: pq.write_table(pa.Table.from_pylist(rows), temp,
                                                        filesystem=fs))


def read_table(run_dir: str, table: str) -> pa.Table:
    """All files of one kind in a run as a single Arrow table (schemas unified, missing -> null)."""
    fs, root = _filesystem(join(run_dir, table))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return pa.table({})
    selector = pafs.FileSelector(root, recursive=True)
    files = sorted(
        f.path for f in fs.get_file_info(selector)
        if f.path.endswith(".parquet") and not f.base_name.startswith(".tmp-")
    )
    if not files:
        return pa.table({})
    schemas = [pq.read_schema(f, filesystem=fs) for f in files]
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    return ds.dataset(files, schema=schema, filesystem=fs, format="parquet").to_table()


def write_json(obj: Any, path: str) -> None:
    """Small JSON sidecar (best config, run spec), also written via temp name + rename."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()

    def write(fs: pafs.FileSystem, temp: str) -> None:
        with fs.open_output_stream(temp) as out:
            out.write(data)

    _atomic_write(path, write)


def read_json(path: str) -> Any | None:
    """A JSON sidecar, or None if there is none."""
    fs, target = _filesystem(path)
    if fs.get_file_info(target).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(target) as src:
        return json.loads(src.read())


def remove_run(run_dir: str) -> None:
    """Delete a run folder (local or remote), for `raysweep sweep --force`."""
    fs, root = _filesystem(run_dir)
    if fs.get_file_info(root).type != pafs.FileType.NotFound:
        fs.delete_dir(root)
