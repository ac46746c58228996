"""Sharding work over processes and gathering it back in order (the collectives themselves run
for real in tests/distributed with 2 gloo processes)."""

from __future__ import annotations

from dataclasses import dataclass

import accelerate.utils
import pytest

from selm.distributed import broadcast_from_main, gather_in_order, map_sharded, run_on_main, shard_bounds
from selm.errors import UserError


@dataclass
class FakeAccelerator:
    process_index: int = 0
    num_processes: int = 1

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0


@pytest.mark.parametrize("n", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_are_contiguous_cover_everything_and_differ_by_at_most_one(n: int, world: int) -> None:
    bounds = [shard_bounds(n, rank, world) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(hi == lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_one_process_needs_no_collective() -> None:
    one = FakeAccelerator()
    assert gather_in_order(one, [3, 1]) == [3, 1]
    assert broadcast_from_main(one, {"a": 1}) == {"a": 1}
    assert map_sharded(one, [1, 2, 3], lambda xs: [10 * x for x in xs]) == [10, 20, 30]
    assert run_on_main(one, lambda: "done") == "done"


def test_map_sharded_runs_each_process_on_its_own_shard_and_gathers_in_rank_order(monkeypatch) -> None:
    items = list("abcde")
    shards: list[list[str]] = []
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda local: shards.append(local) or local)
    calls: list[list[str]] = []

    def upper(xs: list[str]) -> list[str]:
        calls.append(xs)
        return [x.upper() for x in xs]

    for rank in range(3):
        map_sharded(FakeAccelerator(rank, 3), items, upper)
    assert calls == [["a"], ["b", "c"], ["d", "e"]]
    assert [x for shard in shards for x in shard] == list("ABCDE")

    # More processes than items: a process with an empty shard does not call fn.
    calls.clear()
    map_sharded(FakeAccelerator(0, 4), ["x"], upper)
    assert calls == []


def test_a_user_error_on_the_main_process_is_raised_on_every_process(monkeypatch) -> None:
    sent: list[object] = []

    def broadcast(values, from_process):  # type: ignore[no-untyped-def]
        assert from_process == 0
        if not sent:
            sent.append(values[0])  # the main process broadcasts first
        return [sent[0]]

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", broadcast)
    ran_on: list[int] = []

    def fail() -> None:
        ran_on.append(0)
        raise UserError("judge unreachable")

    for rank in (0, 1):
        with pytest.raises(UserError, match="^judge unreachable$"):
            run_on_main(FakeAccelerator(rank, 2), fail)
    assert ran_on == [0]
