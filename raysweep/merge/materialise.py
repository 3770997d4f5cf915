"""`raysweep merge`: stream one merged HF checkpoint to disk, tensor by tensor.

Memory stays at about one output tensor: source pages are memory-mapped and released after use,
and each merged tensor goes straight into its shard (headers are planned up front). Everything is
written to a temporary folder beside `out_dir` and renamed at the end, so `out_dir` is either the
complete checkpoint or untouched.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from raysweep.checkpoint_writer import write_checkpoint
from raysweep.checkpoints import TensorInfo
from raysweep.config import ConfigError, apply_overrides, read_yaml
from raysweep.merge.engine import check_finite, open_sources
from raysweep.merge.kernel import Scratch, combine_into, one_thread
from raysweep.merge.recipes import (
    Recipe,
    compile_recipe,
    config_source,
    parse_recipe,
    recipe_sources,
)

DEFAULT_SHARD_BYTES = 5 * 2**30
# Non-weight files an HF model folder carries; copied from the recipe's config source.
AUX_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
    "chat_template.jinja", "chat_template.json",
)
_TORCH_DTYPE = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def materialise(
    recipe: Recipe, out_dir: str | Path, *, force: bool = False,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Path:
    """Merge `recipe`'s checkpoints into a new HF folder at `out_dir`; returns `out_dir`.

    Output tensors keep the sources' names, shapes and dtypes. An existing `out_dir` is a
    ConfigError unless `force` (then it is replaced only once the new folder is complete).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise ConfigError(f"{out_dir}: output folder exists (use --force to replace it)")
    indexes = open_sources(recipe_sources(recipe))
    primary = indexes[config_source(recipe)]
    table = compile_recipe(recipe, primary.num_layers)
    roles = list(table.sources)
    layout = [TensorInfo(n, primary.dtype(n), primary.shape(n)) for n in primary.names]
    largest = max((math.prod(info.shape) for info in layout), default=0)
    buffers: dict[torch.dtype, torch.Tensor] = {}
    scratch = Scratch()

    def merged():
        for info in layout:
            sources = [indexes[r].tensor(info.name) for r in roles]
            if info.dtype not in buffers:
                buffers[info.dtype] = torch.empty(largest, dtype=info.dtype)
            out = buffers[info.dtype][: math.prod(info.shape)].view(info.shape)
            coeffs = table.for_group(primary.group(info.name))
            # the kernel's in-cache chunk sums flag any NaN/Inf (and, rarely, a sum that merely
            # overflowed); only then the exact elementwise check runs
            if not combine_into(out, sources, coeffs, scratch, check_finite=True):
                if not bool(torch.isfinite(out).all()):
                    _blame(info.name, roles, sources, coeffs, indexes)
            yield info.name, out
            for role in roles:
                indexes[role].release(info.name)

    # parent folders this call creates, deepest first: removed again (if still empty) on failure
    created = [d for d in (out_dir.parent, *out_dir.parent.parents) if not d.exists()]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        with one_thread():
            write_checkpoint(merged(), tmp, layout=layout, max_shard_bytes=max_shard_bytes,
                             metadata={"raysweep_method": recipe.method})
        _copy_aux(primary.path, tmp, layout[0].dtype if layout else None)
        (tmp / "merge_recipe.yaml").write_text(
            yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
        )
        _replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return out_dir


def run_merge(
    recipe_path: str | Path, out_dir: str | Path, force: bool = False,
    overrides: list[str] | None = None,
) -> Path:
    """CLI entry: read the recipe YAML (+ key=value overrides), validate it, materialise it."""
    data = apply_overrides(read_yaml(recipe_path), overrides or [])
    return materialise(parse_recipe(data, str(recipe_path)), out_dir, force=force)


def _blame(name, roles, sources, coeffs, indexes) -> None:
    """A merged tensor is not finite: name the source holding NaN/Inf, else report overflow.

    Checking the output (one pass) instead of every source catches every NaN/Inf that reaches the
    result; a source whose coefficient is 0 does not contribute and is not checked here.
    """
    for role, src, coeff in zip(roles, sources, coeffs):
        if coeff != 0.0:
            check_finite(role, indexes[role], name, src)
    raise ConfigError(f"tensor {name}: merged values overflow the output dtype (coefficients {coeffs})")


def _copy_aux(src: Path, dst: Path, dtype: torch.dtype | None) -> None:
    folder = src if src.is_dir() else src.parent
    for name in AUX_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, dst / name)
    config_file = dst / "config.json"
    if config_file.is_file() and dtype in _TORCH_DTYPE:
        config = json.loads(config_file.read_text())
        keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["torch_dtype"]
        for key in keys:
            config[key] = _TORCH_DTYPE[dtype]
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _replace(tmp: Path, out_dir: Path) -> None:
    """Rename the finished folder into place; an old one is moved aside first, then deleted."""
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
