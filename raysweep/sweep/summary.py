"""Turn a run's trial table into ranked rows and a readable text table (best first)."""
from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

_SKIP = {"run", "tune_trial_id", "params_json", "status", "error", "finished_at", "backend", "method",
         "temperature", "top_p", "max_new_tokens", "actor_setup_s", "rung", "num_prompts", "seed",
         "num_samples", "truncated_prompts", "actor_pid", "actor_config_index"}


def final_rows(trials: pa.Table, metric: str, mode: str = "max") -> list[dict[str, Any]]:
    """The last rung of every trial, ranked by `metric` (failed trials last)."""
    if trials.num_rows == 0:
        return []
    latest: dict[str, dict[str, Any]] = {}
    for row in trials.to_pylist():
        seen = latest.get(row["trial"])
        if seen is None or row["rung"] > seen["rung"]:
            latest[row["trial"]] = row
    sign = -1.0 if mode == "max" else 1.0

    def rank(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(metric)
        ok = row.get("status") == "ok" and isinstance(value, (int, float)) and not math.isnan(value)
        return (0, sign * value) if ok else (1, 0.0)

    return sorted(latest.values(), key=rank)


def _cell(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        return "-"
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if isinstance(value, float) and low is not None and high is not None:
        return f"{value:.3f} [{low:.3f},{high:.3f}]"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_summary(rows: list[dict[str, Any]], metric: str) -> str:
    """Fixed-width table: params, the ranking metric with CI, other scores, length, timings."""
    if not rows:
        return "no finished trials"
    params = sorted({k for r in rows for k in r if k.startswith("param_")})
    scores = sorted({k for r in rows for k in r if f"{k}_ci_low" in r and k != metric
                     and not k.endswith("_truncated")})  # a truncation share is not a score
    timings = ["merge_s", "load_s", "generate_s", "score_s"]
    extra = sorted({k for r in rows for k in r if not k.endswith(("_ci_low", "_ci_high", "_truncated"))}
                   - _SKIP - set(params) - set(scores) - set(timings)
                   - {metric, "trial", "response_tokens", "finished_rate"})
    headers = ([p.removeprefix("param_") for p in params] + [metric] + scores + extra
               + ["tokens", "finished", *timings, "status"])
    table = [headers]
    for row in rows:
        table.append(
            [_cell(row, p) for p in params] + [_cell(row, metric)] + [_cell(row, s) for s in scores]
            + [_cell(row, e) for e in extra]
            + [_cell(row, "response_tokens"), _cell(row, "finished_rate")]
            + [f"{row[t]:.3f}" if isinstance(row.get(t), float) else "-" for t in timings]
            + [str(row.get("status"))]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
