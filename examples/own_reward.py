"""A reward function for `recipes/own-data.yaml`: your own judge is any Python function.

`selm run` calls ``score(prompt, response)`` once per candidate (``judge.batched: true`` passes
lists instead) and ranks a prompt's candidates by the returned floats. For conversational
prompts, ``prompt`` is the list of messages. This one prefers answers of about eight words that
use words of the prompt's topic and end a sentence: replace it with your reward model, rule or
API call.
"""

from __future__ import annotations

import re


def score(prompt: str | list[dict[str, str]], response: str) -> float:
    """Topic overlap (0..1) + 0.5 for ending with . ! or ? − 0.05 per word away from eight."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    topic = {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3}
    words = re.findall(r"\w+", response.lower())
    overlap = len(topic & set(words)) / max(len(topic), 1)
    ends = 0.5 if response.strip().endswith((".", "!", "?")) else 0.0
    return overlap + ends - 0.05 * abs(len(words) - 8)
