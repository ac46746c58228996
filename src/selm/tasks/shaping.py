"""Task-independent reward terms, for use as ``function`` judges (e.g. a member of a ``vector`` judge).

    {kind: function, callable: "selm.tasks.shaping:brevity"}
"""

from __future__ import annotations


def brevity(prompt: str, response: str) -> float:
    """−(words in ``response``) / 10: a second objective that prefers short answers, reward units.

    Args:
        prompt: unused (the signature of a ``function`` judge).
        response: the response text.
    """
    return -len(response.split()) / 10
