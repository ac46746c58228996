import random

import pytest

from selm.data import TokenizedPair
from selm.modeling.tiny import build_tiny_model, build_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(["good answer", "bad answer", "question number 1 2 3 4 5 6 7 8 9"], vocab_size=300)


def synthetic_pairs(n: int, seed: int = 0, explore: bool = False) -> list[TokenizedPair]:
    """Preference pairs a tiny model can learn: chosen responses use tokens 10-19, rejected 20-29."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt = [1] + [rng.randrange(30, 200) for _ in range(rng.randrange(2, 6))]
        chosen = [rng.randrange(10, 20) for _ in range(rng.randrange(2, 6))] + [2]
        rejected = [rng.randrange(20, 30) for _ in range(rng.randrange(2, 6))] + [2]
        y0 = [rng.randrange(10, 30) for _ in range(3)] + [2] if explore else None
        pairs.append(TokenizedPair(index=i, prompt_ids=prompt, chosen_ids=chosen, rejected_ids=rejected, explore_ids=y0))
    return pairs


@pytest.fixture
def tiny_model():
    return build_tiny_model(300)


@pytest.fixture
def make_pairs():
    return synthetic_pairs
