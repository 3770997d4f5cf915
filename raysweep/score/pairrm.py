"""PairRM scorer: llm-blender's pairwise ranker compares each response with its reference response.

    - {name: pairrm, path: models/PairRM-hf, batch_size: 8}

`path` is a local folder in the Hugging Face layout of llm-blender's `DebertaV2PairRM`
(the hub's `llm-blender/PairRM-hf`): config.json with architectures ["DebertaV2PairRM"] and the
prefix-token ids, model.safetensors, and the tokenizer with the <|source|>, <|candidate1|>,
<|candidate2|> tokens. Nothing is fetched from a hub. (The older `llm-blender/PairRM` layout ships
pickled weights only, which raysweep does not load.)

Both orders are compared: logit = (f(src, A, B) - f(src, B, A)) / 2, where f > 0 means the first
candidate is better. So logit(A vs B) = -logit(B vs A) and a response identical to its reference
scores 0: columns `pairrm_win` (1 win, 0 loss, 0.5 tie: |logit| <= tie_margin) and `pairrm_logit`.
The rows of one batch are right-padded and PairRM drops all-pad columns, so results do not depend
on the batching.

Compatibility: llm-blender 0.0.2 imports `transformers.utils.hub.TRANSFORMERS_CACHE`, which
transformers 5 removed; `import_llm_blender` sets it to huggingface_hub's HF_HUB_CACHE first (it is
only read as a default download folder, which raysweep never uses).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from raysweep.config import ConfigError, Spec

ARCHITECTURE = "DebertaV2PairRM"


class PairRMSpec(Spec):
    name: Literal["pairrm"] = "pairrm"
    path: str  # local folder, llm-blender/PairRM-hf layout
    column_prefix: str = "pairrm"  # columns <prefix>_win, <prefix>_logit
    batch_size: int = Field(default=8, ge=1)  # comparisons per forward (each is 2 rows: both orders)
    source_max_length: int = Field(default=1224, ge=8)  # PairRM's training limits, in tokens
    candidate_max_length: int = Field(default=412, ge=8)
    tie_margin: float = Field(default=1e-6, ge=0.0)  # |logit| at or under this is a tie (float noise)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"


def import_llm_blender() -> tuple[Any, Any]:
    """(DebertaV2PairRM class, tokenize_pair function) from llm-blender, on transformers 4 or 5."""
    import transformers.utils.hub as hub

    if not hasattr(hub, "TRANSFORMERS_CACHE"):
        from huggingface_hub.constants import HF_HUB_CACHE

        hub.TRANSFORMERS_CACHE = HF_HUB_CACHE
    try:
        from llm_blender.blender.blender_utils import tokenize_pair
        from llm_blender.pair_ranker.pairrm import DebertaV2PairRM
    except ImportError as err:
        raise ConfigError(
            f"scorers.pairrm: llm-blender is not importable ({err}); pip install 'raysweep[pairrm]'"
        ) from None
    return DebertaV2PairRM, tokenize_pair


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ConfigError(f"pairrm.path: model folder not found: {folder}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"pairrm.path: {folder}: no config.json")
    config = json.loads(config_file.read_text())
    if "ranker_type" in config:
        raise ConfigError(
            f"pairrm.path: {folder}: llm-blender RankerConfig layout (pickled weights); use the "
            f"Hugging Face layout ({ARCHITECTURE}, as in llm-blender/PairRM-hf)"
        )
    archs = config.get("architectures") or []
    if ARCHITECTURE not in archs:
        raise ConfigError(f"pairrm.path: {folder}: architectures {archs}, expected [{ARCHITECTURE!r}]")
    if not (folder / "model.safetensors").is_file() and not (
        folder / "model.safetensors.index.json"
    ).is_file():
        raise ConfigError(f"pairrm.path: {folder}: no model.safetensors")


class PairRMScorer:
    """Win of each response against its reference under PairRM, both orders averaged."""

    name = "pairrm"

    def __init__(self, spec: PairRMSpec):
        import torch
        from transformers import AutoTokenizer

        from raysweep.devices import resolve_device

        self.spec = spec
        folder = Path(spec.path)
        _check_folder(folder)
        model_cls, self._tokenize_pair = import_llm_blender()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "right"  # PairRM trims all-pad columns: they must be trailing
        self.device = resolve_device(spec.device)
        model = model_cls.from_pretrained(folder, dtype=getattr(torch, spec.dtype), use_safetensors=True)
        self.model = model.to(self.device).eval()

    def first_minus_second(self, sources: list[str], firsts: list[str], seconds: list[str]) -> list[float]:
        """PairRM's raw logit per row: > 0 when `firsts[i]` beats `seconds[i]` for `sources[i]`."""
        import torch

        spec = self.spec
        enc = self._tokenize_pair(
            self.tokenizer, sources, firsts, seconds,
            source_max_length=spec.source_max_length, candidate_max_length=spec.candidate_max_length,
        )
        with torch.no_grad():
            logits = self.model(
                input_ids=enc["input_ids"].to(self.device),
                attention_mask=enc["attention_mask"].to(self.device),
            ).logits
        return logits.float().cpu().tolist()

    def score(
        self, prompts: list[str], responses: list[str], references: list[str] | None = None
    ) -> dict[str, list[float]]:
        """{prefix_win: 1 / 0.5 / 0 per response vs its reference, prefix_logit: the averaged logit}."""
        if references is None:
            raise ConfigError(
                "scorers.pairrm: needs reference responses (set references.source or "
                "prompts.reference_column)"
            )
        if not len(prompts) == len(responses) == len(references):
            raise ValueError(
                f"pairrm: {len(prompts)} prompts, {len(responses)} responses, {len(references)} references"
            )
        logits: list[float] = []
        step = self.spec.batch_size
        for start in range(0, len(prompts), step):
            src = prompts[start : start + step]
            a = responses[start : start + step]
            b = references[start : start + step]
            # One forward holds both orders: rows [A,B] for the chunk, then rows [B,A].
            both = self.first_minus_second(src + src, a + b, b + a)
            k = len(src)
            logits.extend(0.5 * (ab - ba) for ab, ba in zip(both[:k], both[k:]))
        margin = self.spec.tie_margin
        wins = [1.0 if x > margin else 0.0 if x < -margin else 0.5 for x in logits]
        prefix = self.spec.column_prefix
        return {f"{prefix}_win": wins, f"{prefix}_logit": logits}
