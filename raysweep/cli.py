"""raysweep command line: parse, validate, call one library function. Bad input exits 2, one line.

    raysweep sweep configs/demo.yaml [key=value ...] [--force]
    raysweep merge configs/ama_partwise.yaml [key=value ...] --out out/ama [--force]
    raysweep summary runs/demo [--metric reward]
    raysweep demo [--seed 0] [--root DIR]
"""
from __future__ import annotations

import argparse
import sys

from raysweep.config import ConfigError


def _sweep(args: argparse.Namespace) -> int:
    from raysweep.sweep.preflight import load_spec, preflight, prepare_run_dir

    spec = load_spec(args.config, args.overrides)
    prompts = preflight(spec)
    prepare_run_dir(spec, force=args.force)
    from raysweep.sweep.run import run_sweep

    rows = run_sweep(spec, prompts)
    failed = sum(r.get("status") != "ok" for r in rows)
    return 1 if failed or not rows else 0


def _merge(args: argparse.Namespace) -> int:
    from raysweep.merge.materialise import run_merge

    out = run_merge(args.recipe, args.out, force=args.force, overrides=args.overrides)
    print(f"wrote {out}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from raysweep.results import join, read_json
    from raysweep.sweep.run import summarize_run
    from raysweep.sweep.summary import format_summary

    metric, mode = args.metric, args.mode
    if metric is None:  # the run's own ranking metric, from the spec it was run with
        spec = read_json(join(args.run_dir, "spec.json"))
        if spec is None:
            raise ConfigError(f"{args.run_dir}: no spec.json (not a run folder?); pass --metric")
        metric, mode = spec["search"]["metric"], spec["search"]["mode"]
    print(format_summary(summarize_run(args.run_dir, metric, mode), metric))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from raysweep.demo.world import ensure_world

    paths = ensure_world(args.root, seed=args.seed)
    print(f"demo world ready at {paths.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raysweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="search merge coefficients with Ray Tune")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides (values parsed as YAML)")
    p.add_argument("--force", action="store_true", help="replace a run folder of another config")
    p.set_defaults(func=_sweep)
    p = sub.add_parser("merge", help="materialise one merged HF checkpoint")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides (values parsed as YAML)")
    p.add_argument("--out", "-o", required=True)
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_merge)
    p = sub.add_parser("summary", help="print a finished run's ranked trial table")
    p.add_argument("run_dir")
    p.add_argument("--metric", default=None, help="default: the run's search.metric")
    p.add_argument("--mode", choices=["max", "min"], default="max")
    p.set_defaults(func=_summary)
    p = sub.add_parser("demo", help="build (or reuse) the offline demo world")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None)
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"raysweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
