"""Recipes -> coefficient tables, and the in-place engine's bit-exactness against the reference.

The reference is recomputed here, independently of kernel.py: for each source with a nonzero
coefficient, in table order, the fp32 product c * src.float(); the products summed left to right
in fp32; one .to(dtype) at the end.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_llama

from raysweep.checkpoint_writer import write_checkpoint
from raysweep.checkpoints import open_checkpoint
from raysweep.config import ConfigError
from raysweep.merge.engine import InPlaceMerger
from raysweep.merge.kernel import Scratch, combine_into
from raysweep.merge.recipes import (
    compile_recipe,
    parse_recipe,
    parse_split,
    recipe_sources,
    revalidate,
)

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
INT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def reference(sources: list[torch.Tensor], coeffs: tuple[float, ...], dtype: torch.dtype) -> torch.Tensor:
    acc = None
    for src, c in zip(sources, coeffs):
        if c == 0.0:
            continue
        term = c * src.float()
        acc = term if acc is None else acc + term
    if acc is None:
        return torch.zeros_like(sources[0], dtype=dtype)
    return acc.to(dtype)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical (tells -0.0 from 0.0; torch.equal would not)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.view(INT_VIEW[a.dtype]), b.view(INT_VIEW[b.dtype])
    )


def save_variant(src: Path, dst: Path, dtype: torch.dtype, seed: int, max_shard_bytes: int = 1 << 40) -> Path:
    """`src`'s names, shapes and config with fresh N(0, 0.02) values in `dtype`, written by hand
    (sharded when max_shard_bytes is small). Seed 0 keeps `src`'s own values."""
    index = open_checkpoint(src)
    gen = torch.Generator().manual_seed(seed)

    def tensors():
        for name in index.names:
            t = index.tensor(name)
            if seed:
                t = torch.randn(t.shape, generator=gen) * 0.02 + (1.0 if "norm" in name else 0.0)
            yield name, t.to(dtype)

    write_checkpoint(tensors(), dst, max_shard_bytes=max_shard_bytes)
    config = dict(index.config, dtype=str(dtype).removeprefix("torch."))
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict:
    """zoo[(dtype, tie)] = {"m0": dir, "m1": dir, "m2": dir}: 4-layer Llamas, seeds 0-2.

    fp32 tied ones are sharded (hand-written shards) to cover sharded inputs everywhere.
    """
    root = tmp_path_factory.mktemp("zoo")
    out: dict = {}
    for tie in (True, False):
        base = build_llama(root / f"base-{tie}", 0, tie=tie, layers=4)
        for dtype in DTYPES:
            shard = 30_000 if (dtype == torch.float32 and tie) else 1 << 40
            out[(dtype, tie)] = {
                f"m{s}": save_variant(base, root / f"{dtype}-{tie}-{s}", dtype, s, shard) for s in range(3)
            }
    return out


def recipe_cases(models: dict) -> dict[str, dict]:
    m0, m1, m2 = (str(models[k]) for k in ("m0", "m1", "m2"))
    return {
        "expo": {"method": "expo", "models": {"sft": m0, "aligned": m1}, "alpha": 0.3},
        "expo_blocks": {"method": "expo", "models": {"sft": m0, "aligned": m1}, "alpha": 0.5,
                        "block_alphas": [0.1, 0.7], "overrides": {"layer.3": 1.3, "lm_head": 0.0}},
        "soup": {"method": "soup", "models": {"a": m0, "b": m1, "c": m2}},
        "soup_weighted": {"method": "soup", "models": {"a": m0, "b": m1},
                          "weights": {"a": 0.7, "b": 0.3}},
        "partwise": {"method": "partwise", "models": {"before": m0, "after": m1},
                     "split": "0#1|0.4|0.3|0.2", "head_ratio": 0.35},
        "task_arithmetic": {"method": "task_arithmetic", "models": {"base": m0, "x": m1, "y": m2},
                            "lambdas": {"x": 0.6, "y": 0.25}},
    }


# ---------------------------------------------------------------------------------------- recipes
def test_split_string_forms():
    assert parse_split("10#20|0.4|0.3|0.2") == {"pivots": [10, 20], "ratios": [0.4, 0.3, 0.2]}
    assert parse_split("split|10#20|0.4|0.3|0.2") == {"pivots": [10, 20], "ratios": [0.4, 0.3, 0.2]}
    assert parse_split("7|0.1|0.9") == {"pivots": [7], "ratios": [0.1, 0.9]}
    assert parse_split("|0.25") == {"pivots": [], "ratios": [0.25]}
    with pytest.raises(ValueError, match=r"^split: expected a string like '10#20\|0.4\|0.3\|0.2'"):
        parse_split(3)


PARTWISE = {"method": "partwise", "models": {"before": "b", "after": "a"}, "head_ratio": 0.3}


def test_partwise_table_follows_ama():
    recipe = parse_recipe({**PARTWISE, "split": "10#20|0.4|0.3|0.2"}, "r.yaml")
    assert recipe.pivots == [10, 20] and recipe.ratios == [0.4, 0.3, 0.2]
    table = compile_recipe(recipe, 32)
    assert table.sources == ("before", "after")
    expect = {"embed": 0.4, "layer.0": 0.4, "layer.10": 0.4, "layer.11": 0.3, "layer.20": 0.3,
              "layer.21": 0.2, "layer.31": 0.2, "final_norm": 0.3, "lm_head": 0.3}
    for group, r in expect.items():
        assert table.for_group(group) == (r, 1.0 - r)
    assert len(table.groups) == 32 + 3
    same = parse_recipe({**PARTWISE, "pivots": [10, 20], "ratios": [0.4, 0.3, 0.2]}, "r.yaml")
    assert compile_recipe(same, 32) == table


@pytest.mark.parametrize(
    "extra,pattern",
    [
        ({"split": "10#20|0.4|0.3"}, r"^r.yaml: ratios: 2 pivot\(s\) need 3 ratios \(got 2\)$"),
        ({"pivots": [3], "ratios": [0.1, 0.2, 0.3]}, r"ratios: 1 pivot\(s\) need 2 ratios \(got 3\)"),
        ({"split": "10#x|0.4|0.3|0.2"}, r"split: pivots must be integers"),
        ({"split": 3}, r"^r.yaml: split: expected a string like '10#20\|0.4\|0.3\|0.2' \(got 3\)$"),
        ({"split": ["1", "0.5"]}, r"^r.yaml: split: expected a string like"),
        ({"split": "20#10|0.4|0.3|0.2"}, r"pivots: must be increasing"),
        ({"split": "10|0.4|1.3"}, r"ratios.*outside \[0, 1\]"),
        ({"split": "10|0.4|0.3", "ratios": [0.1, 0.2]}, r"give either split or pivots \+ ratios"),
        ({"split": "10|0.4|0.3", "head_ratio": "high"}, r"head_ratio"),
    ],
)
def test_partwise_bad_input(extra, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        parse_recipe({**PARTWISE, **extra}, "r.yaml")
    assert str(err.value).startswith("r.yaml: ") and "\n" not in str(err.value)


def test_pivot_beyond_last_layer():
    recipe = parse_recipe({**PARTWISE, "split": "2#4|0.4|0.3|0.2"}, "r.yaml")
    compile_recipe(recipe, 6)
    with pytest.raises(ConfigError, match=r"^split: pivot 4 is beyond the last layer .*4 layers, 0-3\)$"):
        compile_recipe(recipe, 4)


def test_expo_soup_task_arithmetic_tables():
    expo = parse_recipe({"method": "expo", "models": {"sft": "s", "aligned": "a"},
                         "block_alphas": [0.1, 0.2, 0.3], "overrides": {"embed": 0.9}}, "r")
    table = compile_recipe(expo, 6)
    assert table.sources == ("aligned", "sft")
    assert [table.for_group(f"layer.{i}")[1] for i in range(6)] == [-0.1, -0.1, -0.2, -0.2, -0.3, -0.3]
    assert table.for_group("embed") == (1.9, -0.9) and table.for_group("lm_head") == (1.5, -0.5)
    with pytest.raises(ConfigError, match="block_alphas: 3 blocks for a model with 2 layers"):
        compile_recipe(expo, 2)
    soup = compile_recipe(parse_recipe({"method": "soup", "models": {"a": "1", "b": "2", "c": "3"}}, "r"), 1)
    assert soup.for_group("layer.0") == (1 / 3, 1 / 3, 1 / 3)
    ta = compile_recipe(parse_recipe({"method": "task_arithmetic", "models": {"x": "1", "base": "0"},
                                      "lambdas": {"x": 0.25}}, "r"), 1)
    assert ta.sources == ("base", "x") and ta.for_group("final_norm") == (0.75, 0.25)


@pytest.mark.parametrize(
    "data,pattern",
    [
        ({"method": "expo", "models": {"sft": "s", "aligned": "a"}, "alpha": "big"}, r"^r: alpha: Input should be a valid number"),
        # the input value appears once: format_validation_error adds it, the validator does not
        ({"method": "expo", "models": {"sft": "s", "aligned": "a"}, "alpha": float("nan")}, r"^r: alpha: must be a finite number \(got nan\)$"),
        ({"method": "expo", "models": {"sft": "s", "aligned": "a"}, "block_alphas": [0.1, float("inf")]}, r"^r: block_alphas: 1: must be a finite number \(got inf\)$"),
        ({"method": "expo", "models": {"sft": "s", "aligned": "a"}, "overrides": {"embed": float("nan")}}, r"^r: overrides: embed: must be a finite number \(got nan\)$"),
        ({"method": "expo", "models": {"sft": "s"}}, r"models\.aligned: required key missing"),
        ({"method": "expo", "models": {"sft": "s", "aligned": "a"}, "alhpa": 1}, r"alhpa: unknown key"),
        ({"method": "expo", "models": {"sft": "s", "aligned": "a"}, "overrides": {"layer3": 1}}, r"not a group"),
        ({"method": "slerp", "models": {}}, r"^r: method: expected one of expo, soup, partwise, task_arithmetic \(got 'slerp'\)$"),
        ({"method": ["expo"], "models": {}}, r"^r: method: expected one of expo, soup, partwise, task_arithmetic \(got \['expo'\]\)$"),
        ({"models": {}}, r"^r: method: expected one of .* \(got None\)$"),
        ({"method": "soup", "models": {"a": "1", "b": "2"}, "weights": {"a": 0.5, "b": 0.6}}, r"weights: must sum to 1"),
        ({"method": "soup", "models": {"a": "1", "b": "2"}, "weights": {"a": 1.0}}, r"weights: expected keys"),
        ({"method": "soup", "models": {"a": "1"}}, r"^r: models: .*at least 2"),
        ({"method": "task_arithmetic", "models": {"x": "1", "y": "2"}, "lambdas": {}}, r"needs a 'base'"),
        ({"method": "task_arithmetic", "models": {"base": "1", "y": "2"}, "lambdas": {"z": 1}}, r"lambdas: expected keys"),
    ],
)
def test_recipe_bad_input(data, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        parse_recipe(data, "r")
    assert "\n" not in str(err.value)


def test_searchable_fields_revalidate():
    expo = parse_recipe({"method": "expo", "models": {"sft": "s", "aligned": "a"}}, "r")
    assert revalidate(expo, {"alpha": 0.9, "block_alphas": [0.1, 0.2]}).block_alphas == [0.1, 0.2]
    assert expo.model_copy(update={"alpha": 0.2}).alpha == 0.2
    with pytest.raises(ConfigError, match="alpha"):
        revalidate(expo, {"alpha": "x"})
    part = parse_recipe({**PARTWISE, "split": "1|0.4|0.3"}, "r")
    assert revalidate(part, {"ratios": [0.1, 0.2], "head_ratio": 0.5}).ratios == [0.1, 0.2]
    assert revalidate(part, {"split": "1#2|0.5|0.6|0.7"}).pivots == [1, 2]
    with pytest.raises(ConfigError, match="need 2 ratios"):
        revalidate(part, {"ratios": [0.1]})
    soup = parse_recipe({"method": "soup", "models": {"a": "1", "b": "2"}}, "r")
    assert revalidate(soup, {"weights": {"a": 0.25, "b": 0.75}}).weights == {"a": 0.25, "b": 0.75}
    ta = parse_recipe({"method": "task_arithmetic", "models": {"base": "1", "y": "2"}, "lambdas": {"y": 1}}, "r")
    assert revalidate(ta, {"lambdas": {"y": 0.5}}).lambdas == {"y": 0.5}


# ----------------------------------------------------------------------------------------- kernel
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_chunks_match_reference(dtype):
    gen = torch.Generator().manual_seed(0)
    srcs = [torch.randn(10_007, generator=gen).to(dtype) for _ in range(3)]
    srcs[0][:50] = -0.0  # negative zeros must survive exactly as the reference leaves them
    for coeffs in [(1.5, -0.5, 0.0), (1 / 3, 1 / 3, 1 / 3), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, -0.7, 1.7)]:
        out = torch.empty(10_007, dtype=dtype)
        combine_into(out, srcs, coeffs, Scratch(chunk=1000))
        assert same_bits(out, reference(srcs, coeffs, dtype)), coeffs


@pytest.mark.slow
def test_fused_kernel_matches_reference():
    """The compiled kernel (one torch.compile, ~30 s the first time) is bit-exact too."""
    gen = torch.Generator().manual_seed(2)
    for dtype in DTYPES:
        srcs = [torch.randn(50_001, generator=gen).to(dtype) for _ in range(3)]
        for coeffs in [(1.3, -0.3, 0.0), (0.2, 0.5, 0.3)]:
            out = torch.empty(50_001, dtype=dtype)
            combine_into(out, srcs, coeffs, Scratch(), fused=True)
            assert same_bits(out, reference(srcs, coeffs, dtype)), (dtype, coeffs)


def test_kernel_not_fused():
    """A fused multiply-add (torch.add(alpha=)) differs from the reference; the kernel must not."""
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(100_000, generator=gen), torch.randn(100_000, generator=gen)
    out = torch.empty(100_000)
    combine_into(out, [a, b], (1.3, -0.3), Scratch())
    assert same_bits(out, reference([a, b], (1.3, -0.3), torch.float32))


# ----------------------------------------------------------------------------------------- engine
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("case", list(recipe_cases({"m0": 0, "m1": 1, "m2": 2})))
def test_engine_bit_exact(zoo, dtype, tie, case):
    recipe = parse_recipe(recipe_cases(zoo[(dtype, tie)])[case], case)
    sources = recipe_sources(recipe)
    merger = InPlaceMerger(sources)
    table = compile_recipe(recipe, merger.num_layers)
    indexes = {role: open_checkpoint(path) for role, path in sources.items()}
    first = indexes[table.sources[0]]
    targets = {n: torch.full(first.shape(n), float("nan"), dtype=dtype) for n in first.names}
    merger.apply(table, targets)
    for name, target in targets.items():
        expect = reference([indexes[r].tensor(name) for r in table.sources],
                           table.for_group(first.group(name)), dtype)
        assert same_bits(target, expect), name


def test_engine_live_model_tied_and_reapply(zoo):
    """Two tables applied in turn to a live tied model; the shared embedding/lm_head written once."""
    from transformers import AutoModelForCausalLM

    models = zoo[(torch.bfloat16, True)]
    merger = InPlaceMerger({"aligned": models["m1"], "sft": models["m0"]})
    model = AutoModelForCausalLM.from_pretrained(models["m1"], dtype=torch.bfloat16)
    targets = model.state_dict()
    assert targets["lm_head.weight"].data_ptr() == targets["model.embed_tokens.weight"].data_ptr()
    sft, aligned = open_checkpoint(models["m0"]), open_checkpoint(models["m1"])
    recipe = parse_recipe({"method": "expo", "models": {"sft": "s", "aligned": "a"}}, "r")
    for alpha in (0.3, 0.8):
        table = compile_recipe(revalidate(recipe, {"alpha": alpha}), merger.num_layers)
        merger.apply(table, targets)
        for name in aligned.names:
            expect = reference([aligned.tensor(name), sft.tensor(name)], (1 + alpha, -alpha), torch.bfloat16)
            assert same_bits(model.state_dict()[name], expect), name
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # an untied target for the alias gets the embedding's merge
    head = torch.empty_like(targets["lm_head.weight"])
    merger.apply(table, {"lm_head.weight": head})
    assert same_bits(head, targets["model.embed_tokens.weight"])


def test_engine_accepts_loaded_tensors_and_fp32_copies(zoo):
    models = zoo[(torch.bfloat16, False)]
    loaded = {r: {n: open_checkpoint(p).tensor(n).clone() for n in open_checkpoint(p).names}
              for r, p in (("aligned", models["m1"]), ("sft", models["m0"]))}
    table = compile_recipe(parse_recipe({"method": "expo", "models": {"sft": "s", "aligned": "a"}}, "r"), 4)
    outs = []
    for merger in (InPlaceMerger(loaded), InPlaceMerger(loaded, fp32_sources=True),
                   InPlaceMerger({"aligned": models["m1"], "sft": models["m0"]})):
        targets = {n: torch.empty_like(t) for n, t in loaded["aligned"].items()}
        merger.apply(table, targets)
        outs.append(targets)
    for name in outs[0]:
        assert same_bits(outs[0][name], outs[1][name]) and same_bits(outs[0][name], outs[2][name])


@pytest.mark.parametrize("case", ["expo", "expo_blocks", "partwise", "soup"])
@pytest.mark.parametrize("dtype,tie", [(torch.bfloat16, False), (torch.float32, True)])
def test_engine_flat_targets_runs(zoo, monkeypatch, case, dtype, tie):
    """allocate_targets: views of one buffer; adjacent tensors with equal coefficients merge in one
    kernel call, and the result is bit-identical to per-tensor targets (and to the reference)."""
    import raysweep.merge.engine as engine

    recipe = parse_recipe(recipe_cases(zoo[(dtype, tie)])[case], case)
    merger = InPlaceMerger(recipe_sources(recipe))
    table = compile_recipe(recipe, merger.num_layers)
    flat = merger.allocate_targets()
    ptrs = sorted(t.data_ptr() for t in flat.values())
    assert len({t.untyped_storage().data_ptr() for t in flat.values()}) == 1
    assert ptrs[-1] - ptrs[0] < sum(t.numel() * t.element_size() for t in flat.values())
    calls = []
    real = engine.combine_into
    monkeypatch.setattr(engine, "combine_into", lambda out, *a, **k: calls.append(out.numel()) or real(out, *a, **k))
    for t in flat.values():
        t.fill_(float("nan"))
    merger.apply(table, flat)
    distinct = {table.for_group(merger.group(n)) for n in merger.names}
    sharded = dtype == torch.float32 and tie  # runs also break at shard boundaries
    if len(distinct) == 1 and not sharded:
        assert calls == [sum(t.numel() for t in flat.values())]  # the whole model, one call
    assert len(distinct) <= len(calls) < len(merger.names)
    separate = {n: torch.empty_like(t) for n, t in flat.items()}
    calls.clear()
    merger.apply(table, separate)
    assert len(calls) == len(merger.names)
    indexes = {role: open_checkpoint(p) for role, p in recipe_sources(recipe).items()}
    for name in merger.names:
        assert same_bits(flat[name], separate[name]), name
        expect = reference([indexes[r].tensor(name) for r in table.sources], table.for_group(merger.group(name)), dtype)
        assert same_bits(flat[name], expect), name


def test_engine_flat_targets_other_order_and_dtype(zoo):
    """Targets in one buffer but in another order than the sources, or another dtype: no false
    runs, still exact."""
    models = zoo[(torch.bfloat16, False)]
    merger = InPlaceMerger({"aligned": models["m1"], "sft": models["m0"]})
    table = compile_recipe(parse_recipe({"method": "expo", "models": {"sft": "s", "aligned": "a"}}, "r"), 4)
    shapes = merger.indexes["aligned"]
    sizes = [shapes.info(n).nbytes // 2 for n in reversed(merger.layout)]
    buffer = torch.full((sum(sizes),), float("nan"), dtype=torch.bfloat16)
    backwards = {n: v.view(shapes.shape(n)) for n, v in zip(reversed(merger.layout), buffer.split(sizes))}
    merger.apply(table, backwards)
    fp32 = merger.allocate_targets(torch.float32)
    merger.apply(table, fp32)
    for name in merger.names:
        inputs = [merger.indexes[r].tensor(name) for r in table.sources]
        coeffs = table.for_group(merger.group(name))
        assert same_bits(backwards[name], reference(inputs, coeffs, torch.bfloat16)), name
        assert same_bits(fp32[name], reference(inputs, coeffs, torch.float32)), name


def test_engine_bad_input(zoo, tmp_path):
    models = zoo[(torch.float32, False)]
    index = open_checkpoint(models["m1"])
    bad = {n: index.tensor(n).clone() for n in index.names}
    bad["model.layers.2.mlp.up_proj.weight"][3, 5] = float("inf")
    with pytest.raises(ConfigError, match=r"^models\.aligned \(<aligned tensors>\): tensor "
                                          r"model\.layers\.2\.mlp\.up_proj\.weight contains NaN or Inf$"):
        InPlaceMerger({"aligned": bad, "sft": models["m0"]})
    merger = InPlaceMerger({"aligned": models["m1"], "sft": models["m0"]})
    table = compile_recipe(parse_recipe({"method": "expo", "models": {"sft": "s", "aligned": "a"}}, "r"), 4)
    with pytest.raises(ConfigError, match="target tensor model.rotary.inv_freq is not in the sources"):
        merger.apply(table, {"model.rotary.inv_freq": torch.zeros(3)})
    with pytest.raises(ConfigError, match=r"target tensor model\.norm\.weight: shape \[3\]"):
        merger.apply(table, {"model.norm.weight": torch.zeros(3)})
    soup = compile_recipe(parse_recipe({"method": "soup", "models": {"a": "1", "b": "2"}}, "r"), 4)
    with pytest.raises(ConfigError, match="do not match the merger's sources"):
        merger.apply(soup, {})


# ---------------------------------------------------------------------------------------- configs
SHIPPED = sorted(Path(__file__).parent.parent.glob("configs/merge_*.yaml")) + [
    Path(__file__).parent.parent / "configs" / "ama_partwise.yaml"
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# raysweep merge configs/{path.name} --out ")
    recipe = parse_recipe(yaml.safe_load(path.read_text()), str(path))
    assert compile_recipe(recipe, 32).groups.keys() >= {"embed", "layer.31", "final_norm", "lm_head"}
