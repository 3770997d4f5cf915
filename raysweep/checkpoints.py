"""Safetensors checkpoints: lazy index, tensor -> group mapping, compatibility checks.

`open_checkpoint(path)` reads only headers (and config.json); a tensor's bytes are read on first
access through a private memory map (zero-copy; pages shared with the OS page cache, so several
processes on one node that open the same files share physical memory). Pickled `.bin` checkpoints
are never read. Writing lives in raysweep.checkpoint_writer.

Groups (what a coefficient table is keyed by): "embed", "layer.<i>" (0-based), "final_norm",
"lm_head". A tied lm_head (not stored, or stored while the config ties it) belongs to "embed".
"""
from __future__ import annotations

import json
import math
import mmap
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from raysweep.config import ConfigError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100_000_000

# Naming across decoder families: Llama/Mistral/Qwen2/Gemma/Phi ("model.layers.i", "model.norm",
# "model.final_layernorm"), GPT-NeoX ("gpt_neox.layers.i", "embed_in", "embed_out"), GPT-2
# ("transformer.h.i", "wte", "wpe", "ln_f"), original Phi ("transformer.embd.wte", "lm_head.ln").
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")
_LM_HEAD = re.compile(r"^(?:lm_head|embed_out|lm_head\.linear)\.(?:weight|bias)$")
_FINAL_NORM = re.compile(
    r"(?:^|\.)(?:norm|ln_f|final_layer_norm|final_layernorm|final_norm|lm_head\.ln)\.(?:weight|bias)$"
)
_EMBED = re.compile(r"(?:^|\.)(?:embed_tokens|wte|wpe|embed_in|word_embeddings|embed_positions)\.weight$")
_TOKEN_EMBED = re.compile(r"(?:^|\.)(?:embed_tokens|wte|embed_in|word_embeddings)\.weight$")
TIED_HEAD_NAMES = ("lm_head.weight", "embed_out.weight")


def group_of(name: str) -> str | None:
    """The group a tensor name belongs to, by naming convention alone; None if unrecognised."""
    match = _LAYER.search(name)
    if match:
        return f"layer.{int(match.group(1))}"
    if _LM_HEAD.match(name):
        return "lm_head"
    if _FINAL_NORM.search(name):
        return "final_norm"
    if _EMBED.search(name):
        return "embed"
    return None


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, byte range [start, end) in it, dtype and shape."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path | None = None
    start: int = 0
    end: int = 0

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def _read_header(file: Path) -> list[TensorInfo]:
    """Parse a safetensors header and check the file holds every byte it promises."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ConfigError(f"{file}: truncated safetensors file (no header)")
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                raise ConfigError(
                    f"{file}: truncated or invalid safetensors file (header of {header_len} bytes, "
                    f"file of {size})"
                )
            header = json.loads(fh.read(header_len))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file}: unreadable safetensors header ({type(err).__name__})") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{file}: invalid safetensors header (expected a JSON object)")
    base = 8 + header_len
    infos = []
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, begin, end = _header_entry(file, name, meta)
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise ConfigError(f"{file}: tensor {name}: byte range does not match shape {list(shape)}")
        if base + end > size:
            raise ConfigError(
                f"{file}: truncated safetensors file (tensor {name} needs bytes up to {base + end}, "
                f"file has {size})"
            )
        infos.append(TensorInfo(name, dtype, shape, file, base + begin, base + end))
    return infos


def _header_entry(file: Path, name: str, meta) -> tuple[torch.dtype, tuple[int, ...], int, int]:
    """One header entry -> (dtype, shape, begin, end); a malformed entry is a ConfigError."""
    if not isinstance(meta, dict):
        raise ConfigError(f"{file}: tensor {name}: header entry is not an object")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in meta]
    if missing:
        raise ConfigError(f"{file}: tensor {name}: header entry lacks {', '.join(missing)}")
    if not isinstance(meta["dtype"], str) or meta["dtype"] not in DTYPES:
        raise ConfigError(f"{file}: tensor {name}: unsupported dtype {meta['dtype']!r}")
    shape, offsets = meta["shape"], meta["data_offsets"]
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise ConfigError(f"{file}: tensor {name}: shape must be a list of integers >= 0")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(x) is int and x >= 0 for x in offsets) and offsets[0] <= offsets[1]):
        raise ConfigError(f"{file}: tensor {name}: data_offsets must be [begin, end] with 0 <= begin <= end")
    return DTYPES[meta["dtype"]], tuple(shape), offsets[0], offsets[1]


class CheckpointIndex:
    """Lazy view of one checkpoint: headers parsed, tensors memory-mapped on first read."""

    def __init__(
        self,
        path: Path | str,
        infos: Sequence[TensorInfo],
        config: dict | None = None,
        tensors: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        self.path = Path(path)
        self.config: dict = dict(config or {})
        self._infos = {info.name: info for info in infos}
        self._loaded = dict(tensors or {})
        self._maps: dict[Path, mmap.mmap] = {}
        self.names: list[str] = list(self._infos)

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, torch.Tensor], config: dict | None = None, path: str = "<memory>"
    ) -> CheckpointIndex:
        """Wrap already-loaded tensors (e.g. zero-copy views out of Ray's object store)."""
        infos = [TensorInfo(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
        return cls(path, infos, config, tensors)

    # -- metadata -------------------------------------------------------------------------------
    def info(self, name: str) -> TensorInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise ConfigError(f"{self.path}: no tensor named {name}") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape

    def dtype(self, name: str) -> torch.dtype:
        return self.info(name).dtype

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or []
        return archs[0] if archs else str(self.config.get("model_type", "unknown"))

    @property
    def num_layers(self) -> int:
        """1 + the highest layer index among the stored names (config's count if none)."""
        indices = [int(m.group(1)) for n in self.names if (m := _LAYER.search(n))]
        if indices:
            return max(indices) + 1
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if key in self.config:
                return int(self.config[key])
        return 0

    @property
    def tied(self) -> bool:
        """Input embedding and lm_head share storage (config says so, or no head is stored)."""
        if "tie_word_embeddings" in self.config:
            return bool(self.config["tie_word_embeddings"])
        return not any(group_of(n) == "lm_head" for n in self.names)

    @property
    def aliases(self) -> dict[str, str]:
        """Tied head names not stored here -> the stored token embedding they share storage with."""
        if not self.tied:
            return {}
        embeds = [n for n in self.names if _TOKEN_EMBED.search(n)]
        if len(embeds) != 1:
            return {}
        return {head: embeds[0] for head in TIED_HEAD_NAMES if head not in self._infos}

    def group(self, name: str) -> str:
        """Group of a stored tensor (or of a tied alias); unrecognised names are a ConfigError."""
        if name in self.aliases:
            return "embed"
        self.info(name)
        found = group_of(name)
        if found is None:
            raise ConfigError(
                f"{self.path}: tensor {name}: cannot tell its group "
                "(expected embeddings, layers.<i>/h.<i>, a final norm or lm_head naming)"
            )
        if found == "lm_head" and self.tied and name in TIED_HEAD_NAMES:
            return "embed"
        return found

    # -- data -----------------------------------------------------------------------------------
    def tensor(self, name: str) -> torch.Tensor:
        """The stored tensor: a zero-copy view of the file's private memory map (never written)."""
        if name in self._loaded:
            return self._loaded[name]
        info = self.info(name)
        if info.nbytes == 0:
            return torch.empty(info.shape, dtype=info.dtype)
        mm = self._map(info.file)
        flat = torch.frombuffer(mm, dtype=info.dtype, count=info.nbytes // info.dtype.itemsize,
                                offset=info.start)
        return flat.view(info.shape)

    def release(self, name: str) -> None:
        """Drop the tensor's resident pages (re-read from disk if touched again); bounds RSS."""
        info = self._infos.get(name)
        if info is None or info.file not in self._maps or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        start = (info.start + page - 1) // page * page
        stop = info.end // page * page
        if stop > start:
            self._maps[info.file].madvise(mmap.MADV_DONTNEED, start, stop - start)

    def file_order(self) -> list[str]:
        """Tensor names in on-disk order (file, then offset): the layout flat buffers follow, so a
        merge over sources written the same way covers runs of adjacent tensors in one call."""
        return sorted(self.names, key=lambda n: (str(self.info(n).file), self.info(n).start))

    def file_bytes(self, file: Path) -> torch.Tensor:
        """A whole file as one uint8 tensor over the same private map `tensor` reads from."""
        return torch.frombuffer(self._map(file), dtype=torch.uint8)

    def _map(self, file: Path) -> mmap.mmap:
        if file not in self._maps:
            with open(file, "rb") as fh:
                # ACCESS_COPY: a private mapping, so torch sees a writable buffer without any write
                # ever reaching the file; untouched pages stay shared with the page cache.
                self._maps[file] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        return self._maps[file]


def flat_views(
    shapes: Mapping[str, Sequence[int]], dtype: torch.dtype, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Uninitialised tensors of the given shapes, as views of ONE new buffer in `shapes`' order."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    buffer = torch.empty(sum(sizes), dtype=dtype, device=device)
    return {name: view.view(tuple(shape))
            for (name, shape), view in zip(shapes.items(), buffer.split(sizes))}


def open_checkpoint(path: str | Path) -> CheckpointIndex:
    """Open an HF folder (model.safetensors or a sharded index) or one .safetensors file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        return CheckpointIndex(path, _read_header(path), _read_config(path.parent))
    if not path.is_dir():
        raise ConfigError(f"{path}: no such checkpoint folder or .safetensors file")
    config = _read_config(path)
    if (path / INDEX_FILE).is_file():
        try:
            weight_map = json.loads((path / INDEX_FILE).read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{path / INDEX_FILE}: invalid index (expected a weight_map)") from None
        infos: list[TensorInfo] = []
        for shard in sorted(set(weight_map.values())):
            file = path / shard
            if not file.is_file():
                raise ConfigError(f"{path / INDEX_FILE}: shard {shard} is missing")
            for info in _read_header(file):
                if weight_map.get(info.name) == shard:
                    infos.append(info)
        found = {info.name for info in infos}
        for name, shard in weight_map.items():
            if name not in found:
                raise ConfigError(f"{path / shard}: tensor {name} listed in the index is missing")
        return CheckpointIndex(path, infos, config)
    if (path / SINGLE_FILE).is_file():
        return CheckpointIndex(path, _read_header(path / SINGLE_FILE), config)
    raise ConfigError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE} (only safetensors are read)")


def _read_config(folder: Path) -> dict:
    file = folder / "config.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError:
        raise ConfigError(f"{file}: invalid JSON") from None


def check_compatible(indexes: Mapping[str, CheckpointIndex]) -> None:
    """Same architecture, tensor names, shapes and dtypes everywhere; every name has a group.

    Raises ConfigError with one line naming the role, file and tensor, and both values.
    """
    if not indexes:
        raise ConfigError("models: no checkpoints given")
    (role0, first), *rest = indexes.items()
    for name in first.names:
        first.group(name)
    where0 = f"{role0} ({first.path})"
    for role, other in rest:
        where = f"{role} ({other.path})"
        # "unknown" (tensors handed over without a config) is checked by names and shapes alone
        if "unknown" not in (other.architecture, first.architecture) and (
            other.architecture != first.architecture
        ):
            raise ConfigError(
                f"architecture mismatch: {where0} is {first.architecture} but {where} is "
                f"{other.architecture}"
            )
        names = set(other.names)
        for name in first.names:
            if name not in names:
                raise ConfigError(f"tensor {name} is in {where0} but missing from {where}")
        for name in other.names:
            if name not in first._infos:
                raise ConfigError(f"tensor {name} is in {where} but missing from {where0}")
        _check_vocab(first, where0, other, where)
        for name in first.names:
            a, b = first.info(name), other.info(name)
            if a.shape != b.shape:
                raise ConfigError(
                    f"tensor {name}: shape {list(a.shape)} in {where0} but {list(b.shape)} in {where}"
                )
            if a.dtype != b.dtype:
                raise ConfigError(
                    f"tensor {name}: dtype {DTYPE_NAMES[a.dtype]} in {where0} but "
                    f"{DTYPE_NAMES[b.dtype]} in {where}"
                )


def _check_vocab(a: CheckpointIndex, where_a: str, b: CheckpointIndex, where_b: str) -> None:
    vocab_names = [n for n in a.names if _TOKEN_EMBED.search(n) or group_of(n) == "lm_head"]
    bad = [n for n in vocab_names if a.shape(n)[:1] != b.shape(n)[:1]]
    if bad:
        raise ConfigError(
            f"vocabulary mismatch: {', '.join(bad)}: {a.shape(bad[0])[0]} tokens in {where_a} but "
            f"{b.shape(bad[0])[0]} in {where_b}"
        )
