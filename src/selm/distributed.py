"""Small helpers for running one selm command as several processes (torchrun / accelerate launch).

Work lists are split into contiguous shards, one per process, and the results are gathered back in
the original order on every process, so a 2-process run sees the same lists as a 1-process run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from selm.errors import ConfigError, UserError

T = TypeVar("T")
R = TypeVar("R")


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[lo, hi) of the ``rank``-th of ``world_size`` contiguous shards of n items (sizes differ by ≤ 1)."""
    return n * rank // world_size, n * (rank + 1) // world_size


def gather_in_order(accelerator: Any, local: list[R]) -> list[R]:
    """Concatenate every process's ``local`` list in rank order, on every process (picklable items)."""
    if accelerator.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    return gather_object(local)


def map_sharded(accelerator: Any, items: Sequence[T], fn: Callable[[list[T]], list[R]],
                equal_shards: bool = False) -> list[R]:
    """``fn`` over this process's contiguous shard of ``items``; every process gets all results in order.

    ``fn`` must return one result per item. Without ``equal_shards`` it must not use collectives
    (processes may get empty shards, in which case ``fn`` is not called). With it, every process
    calls ``fn`` on ⌈n / processes⌉ items, a short shard padded with copies of an item whose
    results are dropped, so ``fn`` may run a sharded model's forwards in lockstep.
    """
    lo, hi = shard_bounds(len(items), accelerator.process_index, accelerator.num_processes)
    shard = list(items[lo:hi])
    if equal_shards and items:
        size = -(-len(items) // accelerator.num_processes)
        local = fn(shard + [items[lo if hi > lo else 0]] * (size - len(shard)))[:len(shard)]
    else:
        local = fn(shard) if shard else []
    return gather_in_order(accelerator, local)


def broadcast_from_main(accelerator: Any, value: T) -> T:
    """The main process's ``value``, on every process (picklable)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def run_on_main(accelerator: Any, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only and return its result everywhere.

    A ``UserError`` raised there is raised on every process, so no process waits forever at the
    next barrier for a main process that has stopped.
    """
    outcome: tuple[bool, Any] = (True, None)
    if accelerator.is_main_process:
        try:
            outcome = (True, fn())
        except UserError as exc:
            outcome = (False, str(exc))
    ok, value = broadcast_from_main(accelerator, outcome)
    if not ok:
        raise UserError(value)
    return value


def make_accelerator(report_to: list[str] | None = None, output_dir: Path | None = None, run_name: str = "selm",
                     config: dict[str, Any] | None = None) -> Any:
    """An Accelerator whose trackers (tensorboard / wandb / trackio) receive the training log.

    Under ``torchrun`` / ``accelerate launch`` it joins the process group (gloo on CPU, where
    ``cpu=True`` keeps it off any GPU); alone it is a single process.
    """
    import torch
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=report_to or None,
                              project_dir=str(output_dir) if output_dir is not None else None)
    if report_to:
        try:
            accelerator.init_trackers(run_name, config=config)
        except (ImportError, ModuleNotFoundError, ValueError) as exc:
            raise ConfigError(f"train.report_to: {report_to} could not start ({exc}); "
                              f"install the tracker, e.g. pip install -e '.[tensorboard]'") from None
    return accelerator
