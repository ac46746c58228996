"""Everything a run needs besides its config and run directory, built once before the first round:
the objective, the task, π0's folder (after any warm-up SFT), the tokenizer, the judges and the prompts.

Errors in any of them (a bad model path, a pickle-only checkpoint, a judge that cannot be built
or whose server cannot be reached, too few prompts) surface here, before the run directory is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selm.errors import ConfigError, UserError
from selm.judges import Judge, build_judge
from selm.loop.config import RunConfig
from selm.loop.prompts import RunPrompts, load_run_prompts
from selm.modeling.loading import check_weights, load_tokenizer
from selm.objectives.base import Objective
from selm.tasks import Task, get_task
from selm.tasks.sources import resolve_model_source
from selm.train.warmup import ensure_warmup


@dataclass
class RunParts:
    """What a run is made of.

    Attributes:
        objective: the training objective (stateful for some, e.g. LCPO's reliability).
        task: the built-in task (prompts, gold reward), or None.
        model_source: the folder of π0: the configured model, or its warmed-up copy.
        tokenizer: the policy's tokenizer.
        judge: scores the training candidates.
        eval_judge: scores the held-out samples (the training judge unless ``eval.judge`` is set).
        prompts: training and held-out prompts.
    """

    objective: Objective
    task: Task | None
    model_source: str
    tokenizer: Any
    judge: Judge
    eval_judge: Judge
    prompts: RunPrompts


def assemble_run(config: RunConfig, accelerator: Any, progress: bool) -> RunParts:
    """Build the parts of a run as ``config`` says (see :class:`RunParts`).

    Args:
        config: the run config.
        accelerator: the run's accelerator; built-in models (policy, warm-up, judges) are built
            and cached by the main process first, then loaded by the others.
        progress: show progress bars (the warm-up SFT's).
    """
    objective = config.built_objective
    task = get_task(config.task) if config.task else None
    with accelerator.main_process_first():
        model_source = resolve_model_source(config.model_name_or_path)
        tokenizer_source = (resolve_model_source(config.tokenizer_name_or_path, "tokenizer_name_or_path") if config.tokenizer_name_or_path
                            else model_source)
        if config.warmup_sft is not None:
            model_source = str(ensure_warmup(task, model_source, config.warmup_sft,
                                             trust_remote_code=config.trust_remote_code,
                                             allow_pickle=config.allow_pickle, progress=progress))
        judge = build_judge(config.judge)
        eval_judge = build_judge(config.eval.judge) if config.eval.judge else judge
    # A judge server that is down or refuses the config: one error now, not at round 1's judge phase.
    for checked in {id(j): j for j in (judge, eval_judge)}.values():
        checked.check()
    tokenizer = load_tokenizer(tokenizer_source, trust_remote_code=config.trust_remote_code,
                               chat_template=config.chat_template)
    check_weights(model_source, config.allow_pickle)  # pickle-only weights: refused before any work
    prompts = load_run_prompts(config, task)
    if task is not None and config.prompts.eval is not None:
        # The task's gold reward scores every held-out answer: a prompt it cannot read is found now,
        # not after round 0's sampling.
        try:
            task.gold_reward(prompts.eval[:1], [""])
        except UserError as exc:
            raise ConfigError(f"task: '{config.task}' cannot score prompts.eval ({exc}); for your own prompts set "
                              f"task: null and a judge") from None
    return RunParts(objective, task, model_source, tokenizer, judge, eval_judge, prompts)
