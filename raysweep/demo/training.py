"""Training steps of the demo world: tokenizer, tiny Llama SFT, sampling, DPO, reward model.

Plain torch loops on CPU (a 0.9M-parameter model: the fixed cost of a trainer framework would
dominate). Sequences carry no BOS, so `tokenizer(text)` means the same with or without special
tokens in every backend (HF, vLLM, lm-eval); a response is followed by EOS in training.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

PAD, BOS, EOS = 0, 1, 2


def build_tokenizer(corpus: list[str], out_dir: Path | None = None, vocab_size: int = 512):
    """Byte-level BPE trained on `corpus` with <pad>=0, <s>=1, </s>=2; saved if `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    if out_dir is not None:
        fast.save_pretrained(out_dir)
    return fast


def llama_config(vocab_size: int, **overrides):
    """The demo architecture: hidden 128, 4 layers, 4 heads x head_dim 32, MLP 384, tied (~0.9M)."""
    from transformers import LlamaConfig

    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _pad_right(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def _pad_left(seqs: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[PAD] * (width - len(s)) + s for s in seqs], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": (torch.arange(width) >= width - torch.tensor(
        [len(s) for s in seqs]).unsqueeze(1)).long()}


def encode_pairs(tokenizer, prompts: list[str], responses: list[str], eos: list[bool]) -> tuple:
    """Right-padded (input_ids [B, L], attention_mask [B, L], labels [B, L]); labels are -100 on
    the prompt and padding, so the loss covers response tokens (and EOS where `eos[i]`)."""
    p_ids, r_ids = _encode(tokenizer, prompts), _encode(tokenizer, responses)
    seqs, labels = [], []
    for p, r, end in zip(p_ids, r_ids, eos):
        r = r + [EOS] if end else r
        seqs.append(p + r)
        labels.append([-100] * len(p) + r)
    ids = _pad_right(seqs, PAD)
    mask = _pad_right([[1] * len(s) for s in seqs], 0)
    return ids, mask, _pad_right(labels, -100)


def sequence_logprob(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-prob of the labelled tokens, [B] (fp32)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    keep = target != -100
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * keep).sum(-1)


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _fit(
    model, items: list, batch_loss: Callable[[list], torch.Tensor], *, name: str, epochs: int,
    batch_size: int, lr: float, warmup: int, seed: int, clip: float | None,
    log: Callable[[str], None], log_every: int = 50,
) -> None:
    """Shuffled mini-batch epochs over `items`: AdamW, linear warm-up then cosine to 0."""
    rng = random.Random(seed)
    total = math.ceil(len(items) / batch_size) * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, total, warmup))
    model.train()
    step, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        order = list(range(len(items)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            loss = batch_loss([items[i] for i in order[start : start + batch_size]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            step += 1
            if step % log_every == 0 or step == total:
                log(f"  {name} step {step}/{total} epoch {epoch} loss {loss.item():.4f} "
                    f"({time.perf_counter() - t0:.0f}s)")
    model.eval()


def train_sft(
    model, tokenizer, corpus: list[tuple[str, str]], *, epochs: int, batch_size: int, lr: float,
    warmup: int, seed: int, log: Callable[[str], None],
) -> None:
    """Next-token loss on responses (+EOS); AdamW, warm-up then cosine, grad-norm clip 1."""

    def batch_loss(batch: list[tuple[str, str]]) -> torch.Tensor:
        ids, mask, labels = encode_pairs(
            tokenizer, [p for p, _ in batch], [r for _, r in batch], [True] * len(batch)
        )
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    _fit(model, corpus, batch_loss, name="sft", epochs=epochs, batch_size=batch_size, lr=lr,
         warmup=warmup, seed=seed, clip=1.0, log=log)


@torch.no_grad()
def sample(
    model, tokenizer, prompts: list[str], *, n: int, temperature: float, max_new_tokens: int,
    seed: int, batch_size: int = 512,
) -> list[tuple[str, bool]]:
    """n samples per prompt (prompt-major): (text decoded without special tokens, ended with EOS).

    Pure temperature sampling (no top-k/top-p); one torch seed for the whole call.
    """
    model.eval()
    flat = [p for p in prompts for _ in range(n)]
    torch.manual_seed(seed)
    out: list[tuple[str, bool]] = []
    for start in range(0, len(flat), batch_size):
        enc = _pad_left(_encode(tokenizer, flat[start : start + batch_size]))
        gen = model.generate(
            **enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
            max_new_tokens=max_new_tokens, pad_token_id=PAD, eos_token_id=EOS,
        )[:, enc["input_ids"].shape[1] :]
        for row in gen.tolist():
            ended = EOS in row
            row = row[: row.index(EOS)] if ended else row
            out.append((tokenizer.decode(row, skip_special_tokens=True), ended))
    return out


def train_dpo(
    policy, reference, tokenizer, pairs: list[dict], *, steps: int, batch_size: int, lr: float,
    beta: float, seed: int, log: Callable[[str], None],
) -> None:
    """DPO, sigmoid loss: -log sigmoid(beta * ((pc - rc) - (pl - rl))) on summed response
    log-probs (EOS included when the sample emitted it). Constant lr, batches without replacement.

    pairs: dicts with prompt, chosen, rejected, chosen_eos, rejected_eos.
    """
    rng = random.Random(seed)
    order: list[int] = []
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    policy.train()
    t0 = time.perf_counter()
    for step in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(pairs)))
            rng.shuffle(fresh)
            order += fresh
        batch = [pairs[i] for i in order[:batch_size]]
        del order[:batch_size]
        prompts = [b["prompt"] for b in batch] * 2
        responses = [b["chosen"] for b in batch] + [b["rejected"] for b in batch]
        ends = [b["chosen_eos"] for b in batch] + [b["rejected_eos"] for b in batch]
        ids, mask, labels = encode_pairs(tokenizer, prompts, responses, ends)
        with torch.no_grad():
            ref = sequence_logprob(reference, ids, mask, labels)
        pol = sequence_logprob(policy, ids, mask, labels)
        k = len(batch)
        margin = (pol[:k] - ref[:k]) - (pol[k:] - ref[k:])
        loss = -F.logsigmoid(beta * margin).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 10 == 0 or step + 1 == steps:
            acc = (margin > 0).float().mean().item()
            log(f"  dpo step {step + 1}/{steps} loss {loss.item():.4f} margin-acc {acc:.2f} "
                f"({time.perf_counter() - t0:.0f}s)")
    policy.eval()


def reward_scores(model, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Scalar score per text, [N] fp32 (right padding; the model pools the last non-pad token)."""
    outs = []
    for start in range(0, len(texts), batch_size):
        ids = _encode(tokenizer, texts[start : start + batch_size])
        x = _pad_right(ids, PAD)
        mask = _pad_right([[1] * len(s) for s in ids], 0)
        outs.append(model(input_ids=x, attention_mask=mask).logits[:, 0].float())
    return torch.cat(outs)


def train_reward_model(
    model, tokenizer, pairs: list[dict], *, epochs: int, batch_size: int, lr: float, seed: int,
    log: Callable[[str], None],
) -> None:
    """Bradley-Terry: -log sigmoid(r(prompt+chosen) - r(prompt+rejected)); AdamW, cosine."""

    def batch_loss(batch: list[dict]) -> torch.Tensor:
        texts = [b["prompt"] + b["chosen"] for b in batch]
        texts += [b["prompt"] + b["rejected"] for b in batch]
        scores = reward_scores(model, tokenizer, texts, batch_size=len(texts))
        return -F.logsigmoid(scores[: len(batch)] - scores[len(batch) :]).mean()

    total = math.ceil(len(pairs) / batch_size) * epochs
    _fit(model, pairs, batch_loss, name="rm", epochs=epochs, batch_size=batch_size, lr=lr,
         warmup=max(1, total // 20), seed=seed, clip=None, log=log, log_every=20)
