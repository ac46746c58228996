"""Write the small offline preference file used by `selm train recipes/train-sort-selm.yaml`.

Each row: a `sort` task prompt, chosen = the sorted answer, rejected = a demonstration (a random
permutation, as the starting model writes), explore = another demonstration (the stand-in for the
policy's own answer that SELM's optimism term pushes down). Deterministic:

    python examples/make_sort_preferences.py examples/data/sort-preferences.jsonl 256
"""

import json
import random
import sys

from selm.tasks import get_task


def main(path: str, n: int, seed: int = 0) -> None:
    task = get_task("sort")
    rng = random.Random(seed)
    prompts = task.train_prompts(n, seed)
    with open(path, "w", encoding="utf-8") as f:
        for prompt, chosen in zip(prompts, task.reference_responses(prompts)):
            rejected = task.demonstration(prompt, rng)
            while rejected == chosen:
                rejected = task.demonstration(prompt, rng)
            row = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "explore": task.demonstration(prompt, rng)}
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
