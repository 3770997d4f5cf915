"""The demo world's synthetic task: list `n` on-topic nouns, each with an adjective, starting at `s`.

Pure Python (no torch), so scorers and tests import it cheaply.

    prompt:   "Topic: fruit | Count: 3 | Start: pear\\nAnswer:"
    target:   " fresh pear, rotten plum, kind apple."   (then EOS)

The preferred direction is "positive adjectives"; the SFT corpus follows it weakly
(P(positive) = 0.35), DPO pushes it, ExPO extrapolates it. The reward also scores task skill
(on-topic nouns, right count, well-formed list), so an over-extrapolated model that loses the
skill loses reward. Regenerate the shipped lm-eval data with `python -m raysweep.demo.task`.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from raysweep.config import ConfigError

TOPICS: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "pear", "plum", "grape", "lemon", "mango", "peach", "cherry"),
    "animals": ("otter", "horse", "tiger", "rabbit", "eagle", "wolf", "zebra", "camel"),
    "tools": ("hammer", "wrench", "drill", "saw", "chisel", "pliers", "ladder", "shovel"),
    "vehicles": ("car", "truck", "bus", "bicycle", "train", "boat", "tractor", "scooter"),
    "music": ("piano", "guitar", "violin", "drum", "flute", "trumpet", "cello", "harp"),
    "weather": ("rain", "snow", "storm", "breeze", "fog", "thunder", "hail", "frost"),
    "kitchen": ("spoon", "fork", "knife", "plate", "bowl", "kettle", "pan", "cup"),
    "clothing": ("shirt", "coat", "scarf", "boot", "glove", "hat", "sock", "jacket"),
    "furniture": ("chair", "table", "sofa", "bed", "desk", "shelf", "lamp", "stool"),
    "sports": ("tennis", "soccer", "hockey", "golf", "rugby", "boxing", "rowing", "skiing"),
    "buildings": ("house", "tower", "castle", "cabin", "temple", "barn", "church", "palace"),
    "landscape": ("river", "mountain", "forest", "valley", "lake", "meadow", "canyon", "desert"),
}
POSITIVE: tuple[str, ...] = ("good", "bright", "calm", "fresh", "kind", "lovely", "clean", "gentle")
NEGATIVE: tuple[str, ...] = ("bad", "dull", "broken", "dirty", "rotten", "ugly", "cruel", "grim")
COUNTS: tuple[int, ...] = (2, 3, 4, 5, 6)
NUM_HELDOUT = 216
SPLIT_SEED = 1234  # the split is part of the task, the same for every world seed
P_POSITIVE_SFT = 0.35

_PROMPT_RE = re.compile(r"Topic: (\w+) \| Count: (\d+) \| Start: (\w+)\nAnswer:")
_NOUN_TOPIC = {noun: topic for topic, nouns in TOPICS.items() for noun in nouns}
_ADJECTIVES = frozenset(POSITIVE + NEGATIVE)


@dataclass(frozen=True)
class Triple:
    """One task instance: list `count` nouns of `topic`, the first being `start`."""

    topic: str
    start: str
    count: int

    @property
    def prompt(self) -> str:
        return format_prompt(self.topic, self.count, self.start)


def format_prompt(topic: str, count: int, start: str) -> str:
    return f"Topic: {topic} | Count: {count} | Start: {start}\nAnswer:"


def parse_prompt(prompt: str) -> Triple:
    """Inverse of `format_prompt` (searches, so a chat-templated prompt still parses)."""
    match = _PROMPT_RE.search(prompt)
    if match is None:
        raise ConfigError(
            f"prompt {prompt[:60]!r}: not a demo task prompt (Topic: T | Count: n | Start: s)"
        )
    topic, count, start = match.group(1), int(match.group(2)), match.group(3)
    if topic not in TOPICS or start not in TOPICS[topic]:
        raise ConfigError(f"prompt {prompt[:60]!r}: unknown topic or start word")
    return Triple(topic, start, count)


def all_triples() -> list[Triple]:
    """All 480 (topic, start, count) triples, in a fixed order."""
    return [Triple(t, s, n) for t, nouns in TOPICS.items() for s in nouns for n in COUNTS]


def split_triples() -> tuple[list[Triple], list[Triple]]:
    """(train, heldout): 264 and 216 triples, a fixed shuffle independent of the world seed."""
    triples = all_triples()
    random.Random(SPLIT_SEED).shuffle(triples)
    return triples[NUM_HELDOUT:], triples[:NUM_HELDOUT]


def format_response(adjectives: list[str], nouns: list[str]) -> str:
    """` adj1 noun1, adj2 noun2.` (leading space: the response follows `Answer:`)."""
    return " " + ", ".join(f"{a} {w}" for a, w in zip(adjectives, nouns)) + "."


def sample_response(triple: Triple, rng: random.Random, p_positive: float = P_POSITIVE_SFT) -> str:
    """A correct list for `triple`; each adjective is positive with probability `p_positive`."""
    others = [w for w in TOPICS[triple.topic] if w != triple.start]
    nouns = [triple.start] + rng.sample(others, triple.count - 1)
    adjectives = [
        rng.choice(POSITIVE) if rng.random() < p_positive else rng.choice(NEGATIVE) for _ in nouns
    ]
    return format_response(adjectives, nouns)


def sft_corpus(
    triples: list[Triple], size: int, seed: int, p_positive: float = P_POSITIVE_SFT
) -> list[tuple[str, str]]:
    """`size` (prompt, response) pairs drawn uniformly from `triples`; deterministic in `seed`."""
    rng = random.Random(seed)
    out = []
    for _ in range(size):
        triple = rng.choice(triples)
        out.append((triple.prompt, sample_response(triple, rng, p_positive)))
    return out


def corrupt_response(triple: Triple, response: str, rng: random.Random) -> str:
    """One random skill error in a well-formed response: an off-topic or broken noun, a wrong
    first noun, a repeated or extra item, a missing item, or no final period. (The reward model
    sees these beside the SFT samples: a collapsed, over-extrapolated model makes exactly them.)"""
    items = response.strip().rstrip(".").split(", ")
    index = rng.randrange(len(items))
    adjective, noun = items[index].split()
    kind = rng.randrange(6)
    if kind == 0:  # off-topic noun
        noun = rng.choice(TOPICS[rng.choice([t for t in TOPICS if t != triple.topic])])
        items[index] = f"{adjective} {noun}"
    elif kind == 1:  # broken word
        items[index] = f"{adjective} {noun[: rng.randint(1, max(1, len(noun) - 2))]}"
    elif kind == 2:  # first noun is not the start word
        items[0], items[-1] = items[-1], items[0]
    elif kind == 3:  # repeated or extra item
        items.insert(index + 1, rng.choice([items[index], f"{rng.choice(POSITIVE)} {noun}"]))
    elif kind == 4 and len(items) > 1:  # missing item
        del items[index]
    else:  # unfinished
        return " " + ", ".join(items)
    return " " + ", ".join(items) + "."


def task_reward(prompt: str, response: str) -> tuple[float, float]:
    """(reward, valid) for one response, both in [0, 1].

    The response is split on commas after dropping one final period. An item is *valid* if it is
    exactly `adj noun` (two words, adj from either list), the noun belongs to the topic, is not a
    repeat of an earlier noun, and (first item only) is the start word; it *scores* if it is valid
    and its adjective is positive.

        reward = min(scored, n) / max(n, items), halved if the response is not finished
        valid  = min(valid items, n) / max(n, items), never halved

    The cap at n makes extra items cost reward even when correct (4 good items for n = 3 score
    3/4). Responses are decoded without special tokens, so EOS is invisible: "finished" means the
    stripped text ends with the final period, which the model emits only right before EOS (a
    model that rambles past the token cap or never closes the list is unfinished).
    """
    triple = parse_prompt(prompt)
    text = response.strip()
    finished = text.endswith(".")
    if finished:
        text = text[:-1]
    items = [item.strip() for item in text.split(",")] if text else []
    scored = valid = 0
    seen: set[str] = set()
    for index, item in enumerate(items):
        words = item.split()
        if len(words) != 2:
            continue
        adjective, noun = words
        if adjective not in _ADJECTIVES or _NOUN_TOPIC.get(noun) != triple.topic or noun in seen:
            continue
        seen.add(noun)
        if index == 0 and noun != triple.start:
            continue
        valid += 1
        scored += adjective in POSITIVE
    denominator = max(triple.count, len(items))
    reward = min(scored, triple.count) / denominator * (1.0 if finished else 0.5)
    return reward, min(valid, triple.count) / denominator


# ---- the static lm-eval "demo_facts" dataset: which noun continues the topic list? ----

LMEVAL_DIR = Path(__file__).with_name("lmeval")
LMEVAL_DATA = LMEVAL_DIR / "demo_facts.jsonl"


def lmeval_rows(triples: list[Triple], seed: int = 0, num_choices: int = 4) -> list[dict]:
    """One multiple-choice question per triple: the context is the prompt plus a correct first item
    and the next adjective; choices are one unused on-topic noun and off-topic distractors."""
    rng = random.Random(seed)
    rows = []
    for index, triple in enumerate(triples):
        first_adj, next_adj = rng.choice(POSITIVE + NEGATIVE), rng.choice(POSITIVE + NEGATIVE)
        context = f"{triple.prompt} {first_adj} {triple.start}, {next_adj}"
        correct = rng.choice([w for w in TOPICS[triple.topic] if w != triple.start])
        other_topics = rng.sample([t for t in TOPICS if t != triple.topic], num_choices - 1)
        choices = [correct] + [rng.choice(TOPICS[t]) for t in other_topics]
        rng.shuffle(choices)
        rows.append(
            {"id": index, "context": context, "choices": choices, "label": choices.index(correct)}
        )
    return rows


def write_lmeval_data(path: Path = LMEVAL_DATA) -> Path:
    """(Re)generate the shipped jsonl from the held-out triples (atomic write)."""
    _, heldout = split_triples()
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in lmeval_rows(heldout)))
    tmp.replace(path)
    return path


if __name__ == "__main__":
    print(write_lmeval_data())
