"""The offline demo world: tiny SFT / DPO-aligned / reward models trained on the fly, cached on disk.

    python -m raysweep.demo.world [--root DIR] [--seed N] [--quick]

Builds a world where ExPO visibly helps (benchmarks/demo_alpha_curve.py measures it): a BPE
tokenizer, an SFT Llama trained on a corpus that weakly prefers positive adjectives, ~1,500
preference pairs sampled from it and ranked by `task_reward`, a DPO model stopped early (20 steps,
under one epoch: the under-trained regime where extrapolation pays), and a reward model trained
on the same pairs plus synthetic skill-error pairs. Cost: ~230 s of one core (5.5-6 min wall
measured on 2 cores shared with other jobs). DPO is a hand-written loop: TRL's DPOTrainer took
~38 s for the same 20 steps (12 s of it imports) against 13 s, and always appends EOS, which would
mislabel samples cut at the token cap. Every artefact is written under a temp name and renamed when complete;
`manifest.json` is written last, so a world without it (or built from another spec) is rebuilt.
Configs refer to the artefacts as demo://sft, demo://aligned, demo://reward_model, demo://prompts.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from raysweep.config import ConfigError, Spec
from raysweep.demo import task

VERSION = "demo-v1"
MANIFEST = "manifest.json"


class WorldSpec(Spec):
    """Size and training knobs of the world (defaults: the measured design)."""

    sft_examples: int = 6000
    sft_epochs: int = 3
    sft_batch_size: int = 64
    sft_lr: float = 2e-3
    sft_warmup: int = 20
    pair_samples: int = 4  # samples per group; a group's best vs worst becomes a pair
    pair_groups: int = 6  # groups per training prompt: ~1,500 pairs, so DPO stays under one epoch
    pair_temperature: float = 1.0
    max_new_tokens: int = 48
    dpo_steps: int = 20  # 640 of ~1,500 pairs: under-trained on purpose (ExPO pays most there)
    dpo_batch_size: int = 32
    dpo_lr: float = 1e-4
    dpo_beta: float = 0.1
    rm_synthetic_pairs: int = 1500  # draws of clean vs corrupted answer (~900 left after ties)
    rm_epochs: int = 2
    rm_batch_size: int = 64
    rm_lr: float = 1e-3

    @classmethod
    def quick(cls) -> "WorldSpec":
        """A reduced world for tests: same architecture and files, seconds to build."""
        return cls(sft_examples=1280, sft_epochs=1, sft_batch_size=32, sft_warmup=5,
                   pair_samples=2, pair_groups=1, max_new_tokens=24, dpo_steps=2,
                   dpo_batch_size=16, rm_synthetic_pairs=64, rm_epochs=1)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class WorldPaths:
    """Where a built world lives. Model entries are HF folders (config, safetensors, tokenizer)."""

    root: Path
    sft: Path
    aligned: Path
    reward_model: Path
    prompts: Path  # held-out eval prompts, jsonl: id, prompt, topic, count, start, split
    train_prompts: Path  # the prompts the preference pairs were sampled on (same columns)
    pairs: Path  # jsonl: prompt, chosen, rejected, {chosen,rejected}_eos, {chosen,rejected}_reward
    manifest: Path

    @classmethod
    def at(cls, root: Path) -> "WorldPaths":
        return cls(root, root / "sft", root / "aligned", root / "reward_model",
                   root / "prompts.jsonl", root / "train_prompts.jsonl", root / "pairs.jsonl",
                   root / MANIFEST)


# Every name a (possibly interrupted) build writes into the world folder: the artefacts and the
# ".<name>.tmp" names _save_model / _write_jsonl / the manifest write use before renaming.
_ARTEFACTS = [p.name for f, p in WorldPaths.at(Path("w")).__dict__.items() if f != "root"]
_BUILD_NAMES = frozenset(_ARTEFACTS) | {f".{name}.tmp" for name in _ARTEFACTS}


def default_root(seed: int, spec: WorldSpec) -> Path:
    """$RAYSWEEP_CACHE (or ~/.cache/raysweep) / demo-v1-seed{seed}[-{spec digest} if not default]."""
    base = Path(os.environ.get("RAYSWEEP_CACHE") or Path.home() / ".cache" / "raysweep")
    suffix = "" if spec == WorldSpec() else f"-{spec.digest()}"
    return base / f"{VERSION}-seed{seed}{suffix}"


def _complete(paths: WorldPaths, seed: int, spec: WorldSpec) -> bool:
    try:
        manifest = json.loads(paths.manifest.read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("version") == VERSION and manifest.get("seed") == seed \
        and manifest.get("spec") == spec.model_dump()


def _check_clearable(root: Path) -> None:
    """`root` may be deleted and rebuilt only if it is absent, empty, holds a demo world's
    manifest, or holds nothing but what an interrupted build leaves; else a ConfigError (a
    mistyped --root must never wipe a user's folder)."""
    if not root.exists() and not root.is_symlink():
        return
    if root.is_dir() and not root.is_symlink():
        try:
            version = json.loads((root / MANIFEST).read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            version = None
        if isinstance(version, str) and version.startswith("demo-"):
            return
        if all(entry.name in _BUILD_NAMES for entry in root.iterdir()):
            return
    raise ConfigError(f"{root}: exists and is not a demo world folder")


@contextmanager
def _lock(root: Path):
    """One builder per world across processes (Ray actors may resolve demo:// concurrently)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(tmp: Path, final: Path) -> None:
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    os.replace(tmp, final)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    _publish(tmp, path)


def _save_model(model, tokenizer, final: Path) -> None:
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _publish(tmp, final)


def _prompt_rows(triples: list[task.Triple], split: str) -> list[dict]:
    return [{"id": f"{split}-{i:03d}", "prompt": t.prompt, "topic": t.topic, "count": t.count,
             "start": t.start, "split": split} for i, t in enumerate(triples)]


def preference_pairs(prompts: list[str], samples: list[tuple[str, bool]], per_prompt: int) -> list[dict]:
    """Best vs worst of each prompt's `per_prompt` samples by task_reward; ties dropped."""
    pairs = []
    for i, prompt in enumerate(prompts):
        group = samples[i * per_prompt : (i + 1) * per_prompt]
        scored = sorted(((task.task_reward(prompt, text)[0], text, eos) for text, eos in group),
                        key=lambda s: s[0])
        (lo, rejected, rejected_eos), (hi, chosen, chosen_eos) = scored[0], scored[-1]
        if hi > lo:
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                          "chosen_eos": chosen_eos, "rejected_eos": rejected_eos,
                          "chosen_reward": hi, "rejected_reward": lo})
    return pairs


def sample_pairs(sft, tokenizer, prompts: list[str], spec: WorldSpec, seed: int,
                 log: Callable[[str], None]) -> list[dict]:
    """Preference pairs: `pair_groups` x `pair_samples` SFT samples per prompt at
    `pair_temperature`, best vs worst of each group by task_reward, ties dropped."""
    from raysweep.demo import training

    per_prompt = spec.pair_groups * spec.pair_samples
    samples = training.sample(sft, tokenizer, prompts, n=per_prompt, temperature=spec.pair_temperature,
                              max_new_tokens=spec.max_new_tokens, seed=seed)
    group_prompts = [p for p in prompts for _ in range(spec.pair_groups)]
    pairs = preference_pairs(group_prompts, samples, spec.pair_samples)
    if not pairs:
        raise RuntimeError("demo world: no preference pairs (every sample group tied)")
    rewards = [task.task_reward(p, text)[0] for p, (text, _) in
               zip([p for p in prompts for _ in range(per_prompt)], samples)]
    log(f"[demo world] {len(pairs)} pairs from {len(samples)} samples "
        f"(sft mean train reward at T={spec.pair_temperature:g}: {sum(rewards) / len(rewards):.3f})")
    return pairs


def synthetic_pairs(triples: list[task.Triple], size: int, seed: int) -> list[dict]:
    """`size` draws of (clean answer, the same answer with one skill error), ordered by
    task_reward, ties dropped: they teach the reward model task skill as well as adjectives."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(size):
        triple = rng.choice(triples)
        clean = task.sample_response(triple, rng, p_positive=rng.random())
        broken = task.corrupt_response(triple, clean, rng)
        (lo, worse), (hi, better) = sorted(
            (task.task_reward(triple.prompt, text)[0], text) for text in (clean, broken)
        )
        if hi > lo:
            pairs.append({"prompt": triple.prompt, "chosen": better, "rejected": worse,
                          "chosen_eos": True, "rejected_eos": True,
                          "chosen_reward": hi, "rejected_reward": lo})
    return pairs


def _build(
    paths: WorldPaths, seed: int, spec: WorldSpec, log: Callable[[str], None], threads: int
) -> None:
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    from raysweep.demo import training

    torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    t_all = t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        timings[name] = round(time.perf_counter() - t, 2)
        log(f"[demo world] {name} done in {timings[name]:.1f}s")
        t = time.perf_counter()

    train, heldout = task.split_triples()
    corpus = task.sft_corpus(train, spec.sft_examples, seed)
    tokenizer = training.build_tokenizer([p + r for p, r in corpus])
    _write_jsonl(paths.prompts, _prompt_rows(heldout, "heldout"))
    _write_jsonl(paths.train_prompts, _prompt_rows(train, "train"))
    lap("tokenizer+prompts")

    torch.manual_seed(seed)
    config = training.llama_config(len(tokenizer))
    sft = LlamaForCausalLM(config)
    log(f"[demo world] sft: {sum(p.numel() for p in sft.parameters()) / 1e6:.2f}M params, "
        f"{len(corpus)} examples x {spec.sft_epochs} epochs")
    training.train_sft(sft, tokenizer, corpus, epochs=spec.sft_epochs, batch_size=spec.sft_batch_size,
                       lr=spec.sft_lr, warmup=spec.sft_warmup, seed=seed, log=log)
    _save_model(sft, tokenizer, paths.sft)
    lap("sft")

    pairs = sample_pairs(sft, tokenizer, [t.prompt for t in train], spec, seed + 1, log)
    _write_jsonl(paths.pairs, pairs)
    lap("pairs")

    policy = LlamaForCausalLM(config)
    policy.load_state_dict(sft.state_dict())
    sft.requires_grad_(False)
    training.train_dpo(policy, sft, tokenizer, pairs, steps=spec.dpo_steps,
                       batch_size=spec.dpo_batch_size, lr=spec.dpo_lr, beta=spec.dpo_beta,
                       seed=seed + 2, log=log)
    _save_model(policy, tokenizer, paths.aligned)
    lap("dpo")

    torch.manual_seed(seed + 3)
    rm = LlamaForSequenceClassification(training.llama_config(len(tokenizer), num_labels=1))
    rm.model.load_state_dict(sft.model.state_dict())  # the usual RM init: the SFT backbone
    rm_pairs = pairs + synthetic_pairs(train, spec.rm_synthetic_pairs, seed + 4)
    log(f"[demo world] reward model: {len(pairs)} sampled + {len(rm_pairs) - len(pairs)} "
        f"synthetic pairs x {spec.rm_epochs} epochs")
    training.train_reward_model(rm, tokenizer, rm_pairs, epochs=spec.rm_epochs,
                                batch_size=spec.rm_batch_size, lr=spec.rm_lr, seed=seed + 3, log=log)
    _save_model(rm, tokenizer, paths.reward_model)
    lap("reward_model")

    timings["total"] = round(time.perf_counter() - t_all, 2)
    manifest = {"version": VERSION, "seed": seed, "spec": spec.model_dump(), "timings_s": timings,
                "num_pairs": len(pairs), "num_heldout": len(heldout), "num_train": len(train)}
    tmp = paths.manifest.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, paths.manifest)
    log(f"[demo world] built {paths.root} in {timings['total']:.1f}s")


def ensure_world(
    root: Path | None = None, seed: int = 0, log: Callable[[str], None] = print,
    spec: WorldSpec | None = None, quick: bool = False, threads: int = 1,
) -> WorldPaths:
    """Return the world at `root` (default: `default_root`), building it first unless complete.

    `quick=True` builds the reduced `WorldSpec.quick()` (tests); `spec` overrides both. `threads`
    defaults to 1: on a shared 2-core machine two torch threads spin against other processes and
    ran 3-10x slower than one in our measurements (the world is bit-reproducible per thread count).
    """
    spec = spec or (WorldSpec.quick() if quick else WorldSpec())
    root = Path(root) if root is not None else default_root(seed, spec)
    paths = WorldPaths.at(root)
    if _complete(paths, seed, spec):
        return paths
    _check_clearable(root)  # before the lock: its file goes beside root
    with _lock(root):
        if _complete(paths, seed, spec):  # another process built it while we waited
            return paths
        _check_clearable(root)
        if root.exists():
            log(f"[demo world] {root}: incomplete or stale, rebuilding")
            shutil.rmtree(root)
        root.mkdir(parents=True)
        log(f"[demo world] building seed {seed} into {root}")
        _build(paths, seed, spec, log, threads)
    return paths


URI_FIELDS = ("sft", "aligned", "reward_model", "prompts", "train_prompts", "pairs", "root")


def resolve_demo_uri(uri: str, root: Path | None = None, seed: int = 0) -> Path:
    """Map demo://<name> to a built artefact's path, building the world if needed.

    name is one of URI_FIELDS (e.g. demo://sft, demo://aligned, demo://reward_model, demo://prompts).
    """
    prefix = "demo://"
    name = uri[len(prefix):] if uri.startswith(prefix) else None
    if name not in URI_FIELDS:
        raise ConfigError(f"{uri!r}: unknown demo artefact; expected demo://<name> with name in "
                          f"{', '.join(URI_FIELDS)}")
    return getattr(ensure_world(root, seed), name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build (or reuse) the offline demo world.")
    parser.add_argument("--root", type=Path, default=None, help="world folder (default: cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="reduced world (tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (<= 2 here)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = ensure_world(args.root, args.seed, quick=args.quick, threads=args.threads)
    print(json.dumps({k: str(v) for k, v in paths.__dict__.items()}, indent=2))


if __name__ == "__main__":
    main()
