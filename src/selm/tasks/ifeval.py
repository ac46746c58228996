"""The ``ifeval`` task: write about a topic while obeying 1–3 verifiable constraints.

Prompt (plain text, a format a base model continues)::

    Instruction: Write about volcanoes. Answer in at most 20 words. Include the word "history".
    Answer:

Gold reward = the fraction of the prompt's constraints that the response meets
(``selm.tasks.constraints``). Topics are split once into training and held-out topics, so the
held-out prompts test instruction following on topics never seen in training.

Demonstrations (for the starting model / an SFT warm-up) are assembled from sentence templates by
the project. Like the ``sort`` task's, they have the right format but are not aligned with the
goal: each constraint is honoured with probability ``DEMO_KEEP`` (0.5), so the warmed-up model
follows instructions only part of the time and preference training has something to find.
``reference_responses`` honour all of them (reward 1).
"""

from __future__ import annotations

import json
import random
import re

from selm.errors import DataError
from selm.tasks.base import Task
from selm.tasks.constraints import (
    Constraint,
    compatible,
    parse_instructions,
    satisfaction,
)
from selm.tasks.registry import register_task

TOPICS = (
    "volcanoes", "the ocean", "honey bees", "bicycles", "coffee", "the moon", "rain forests", "chess",
    "libraries", "trains", "gardening", "the desert", "penguins", "bread", "music", "snow", "rivers",
    "castles", "robots", "tea", "mountains", "football", "clocks", "the sun", "islands", "owls", "cheese",
    "bridges", "painting", "whales", "kites", "candles", "maps", "dinosaurs", "soap", "forests", "boats",
    "the wind", "cats", "dogs", "rice", "glass", "trees", "stars", "birds", "lakes", "paper", "horses",
    "cooking", "swimming", "photography", "farming", "history books", "the city", "winter", "summer",
    "friendship", "computers", "bees", "sleep",
)
# Every fourth topic is held out: the two sets never share a topic.
EVAL_TOPICS = TOPICS[3::4]
TRAIN_TOPICS = tuple(t for t in TOPICS if t not in EVAL_TOPICS)

INCLUDE_WORDS = ("history", "future", "people", "simple", "practice", "world", "example", "nature")
FORBID_WORDS = ("very", "really", "thing", "nice", "good", "always", "important", "great")
ENDINGS = ("That is all", "Thanks for reading", "The end")
JSON_KEYS = (("title", "summary"), ("topic", "answer"), ("name", "reason"), ("topic", "fact", "summary"))
# Sentence templates: no commas and no forbidden word, so a demonstration meets those by default.
TEMPLATES = (
    "{T} is worth learning about.", "Many people enjoy {t}.", "{T} has a long past.",
    "People talk about {t} every day.", "{T} can teach us a lot.", "Some experts study {t} for years.",
    "{T} changes over time.", "It is easy to start with {t}.", "Learning about {t} takes patience.",
    "{T} connects to many other topics.", "Children often ask about {t}.", "{T} looks different in every place.",
)
DEMO_KEEP = 0.5
_KINDS = ("max_words", "min_words", "sentences", "include", "forbid", "bullets", "json", "lowercase", "uppercase",
          "ending", "no_commas")
_PROMPT_RE = re.compile(r"^Instruction: Write about (.+?)\. (.+)\nAnswer:$", re.S)


def sample_constraints(rng: random.Random) -> list[Constraint]:
    """1–3 compatible constraints drawn with ``rng``."""
    k = rng.randint(1, 3)
    while True:
        constraints = [_random_constraint(rng, kind) for kind in rng.sample(_KINDS, k)]
        if compatible(constraints):
            return constraints


def _random_constraint(rng: random.Random, kind: str) -> Constraint:
    value = {
        "max_words": lambda: str(rng.choice((12, 20, 30))),
        "min_words": lambda: str(rng.choice((20, 30))),
        "sentences": lambda: str(rng.randint(1, 3)),
        "include": lambda: rng.choice(INCLUDE_WORDS),
        "forbid": lambda: rng.choice(FORBID_WORDS),
        "bullets": lambda: str(rng.randint(2, 4)),
        "json": lambda: ",".join(rng.choice(JSON_KEYS)),
        "ending": lambda: rng.choice(ENDINGS),
    }.get(kind, lambda: "")()
    return Constraint(kind, value)


def format_prompt(topic: str, constraints: list[Constraint]) -> str:
    """The prompt text for ``topic`` and ``constraints`` (see the module docstring)."""
    return f"Instruction: Write about {topic}. " + " ".join(c.instruction() for c in constraints) + "\nAnswer:"


def parse_prompt(prompt: str) -> tuple[str, list[Constraint]]:
    """(topic, constraints) of an ifeval prompt; a malformed prompt is a DataError."""
    match = _PROMPT_RE.match(prompt)
    if match is None:
        raise DataError(f"not an ifeval prompt (expected 'Instruction: Write about ... \\nAnswer:'): {prompt[:80]!r}")
    try:
        return match.group(1), parse_instructions(match.group(2))
    except ValueError as exc:
        raise DataError(f"ifeval prompt {prompt[:60]!r}: {exc}") from None


def build_response(topic: str, constraints: list[Constraint], rng: random.Random) -> str:
    """A templated response about ``topic`` that meets every constraint in ``constraints``.

    Text responses start with a space, bullet lists and JSON on a new line (they follow ``Answer:``).
    """
    kinds = {c.kind: c for c in constraints}
    if "sentences" in kinds:
        counts = [int(kinds["sentences"].value)]
    elif "bullets" in kinds:
        counts = [int(kinds["bullets"].value)]
    elif "json" in kinds:
        counts = [len(kinds["json"].keys)]
    else:
        first = rng.randint(1, 3)
        counts = [first, *range(1, len(TEMPLATES) + 1)]
    for count in counts:
        response = _assemble(topic, kinds, count, rng)
        if not constraints or satisfaction(constraints, response) == 1.0:
            return response
    raise RuntimeError(f"no templated response meets {constraints} for topic {topic!r}")  # a bug in the tables


def _assemble(topic: str, kinds: dict[str, Constraint], count: int, rng: random.Random) -> str:
    fill = {"t": topic, "T": topic[0].upper() + topic[1:]}
    sentences = [template.format(**fill) for template in rng.sample(TEMPLATES, count)]
    if "include" in kinds:
        sentences[-1] = f"It also relates to {kinds['include'].value}."
    if "bullets" in kinds:
        text = "\n" + "\n".join("- " + s for s in sentences)
    elif "json" in kinds:
        text = "\n" + json.dumps(dict(zip(kinds["json"].keys, sentences)))
    else:
        text = " " + " ".join(sentences)
    if "ending" in kinds:
        text += " " + kinds["ending"].value
    if "lowercase" in kinds:
        text = text.lower()
    if "uppercase" in kinds:
        text = text.upper()
    return text


@register_task
class IfEvalTask(Task):
    """Verifiable instruction following on templated topics; see the module docstring."""

    name = "ifeval"
    # Bump when prompts, demonstrations or the reward change: it is part of the model cache keys.
    version = 1
    max_new_tokens = 64
    stop_strings = ("\nInstruction:",)
    eval_pool_size = 300

    def sample_prompt(self, rng: random.Random) -> str:
        return format_prompt(rng.choice(TRAIN_TOPICS), sample_constraints(rng))

    def sample_eval_prompt(self, rng: random.Random) -> str:
        return format_prompt(rng.choice(EVAL_TOPICS), sample_constraints(rng))

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        self._check_pairs(prompts, responses)
        return [satisfaction(parse_prompt(p)[1], r) for p, r in zip(prompts, responses)]

    def reference_responses(self, prompts: list[str]) -> list[str]:
        rng = random.Random(0)
        return [build_response(*parse_prompt(p), rng) for p in prompts]

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """A templated response that honours each constraint with probability ``DEMO_KEEP``."""
        topic, constraints = parse_prompt(prompt)
        return build_response(topic, [c for c in constraints if rng.random() < DEMO_KEEP], rng)
