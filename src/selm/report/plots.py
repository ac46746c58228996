"""The report's plots, rendered to PNG bytes with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` on an explicit Agg canvas and styled inside
``rc_context``, never through pyplot: no display is needed, and neither pyplot's global figure
registry nor the caller's matplotlib backend and settings are touched.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from selm.eval import keys
from selm.eval.intervals import student_t_quantile
from selm.eval.keys import is_time_key
from selm.report.load import RunData, number

if TYPE_CHECKING:  # matplotlib.typing exists from matplotlib 3.8 only; needed for type checkers alone
    from matplotlib.typing import RcKeyType

# Okabe-Ito: distinguishable with colour-vision deficiencies and in greyscale print.
BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, YELLOW, GREY = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#7f7f7f")

STYLE: dict[RcKeyType, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 144,
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
}

# (metric key, legend label, colour) of the per-phase timings, in the order the phases run. Each
# phase keeps its colour whichever phases a run has; unknown time/... keys get the spare colours.
TIME_PHASES: tuple[tuple[str, str, str], ...] = tuple(
    (keys.time_key(phase), phase, colour) for phase, colour in
    (("sample", BLUE), ("judge", ORANGE), ("reference", PURPLE), ("train", GREEN), ("eval", SKY)))
SPARE_COLOURS = (VERMILLION, YELLOW, GREY)

# Metrics keys drawn in a plot below (and every time/<phase>_s key), so the "other metrics" table skips them.
PLOTTED_KEYS = frozenset({keys.REWARD_MEAN, keys.REWARD_STD, keys.GOLD_REWARD_MEAN, keys.GOLD_REWARD_STD, keys.KL,
                          keys.WIN_RATE_VS_INITIAL, keys.WIN_RATE_VS_PREVIOUS, keys.LENGTH_MEAN,
                          keys.BEST_OF_N_REWARD, keys.BEST_OF_N_GOLD_REWARD,
                          keys.CHOSEN_LOGP_FELL_FRAC, keys.REJECTED_LOGP_ROSE_FRAC, keys.BOTH_LOGP_FELL_FRAC})

# Best-of-N baseline of each reward series (drawn dashed in its panel).
BEST_OF_N_KEYS = {keys.REWARD_MEAN: keys.BEST_OF_N_REWARD, keys.GOLD_REWARD_MEAN: keys.BEST_OF_N_GOLD_REWARD}

# (train_log key, y label) of the training-curve panels.
TRAIN_PANELS = ((keys.LOSS, "loss"), (keys.REWARD_ACCURACIES, "reward accuracy"), (keys.REWARD_MARGINS, "implicit reward"))


@dataclass(frozen=True)
class Plot:
    """One rendered plot: its file name in the report folder, title, caption and PNG bytes.

    ``wide`` marks multi-panel figures, which a page layout should give the full width.
    """

    filename: str
    title: str
    caption: str
    png: bytes
    wide: bool = False


def is_plotted(key: str) -> bool:
    """True when the metric ``key`` is drawn in one of the plots."""
    return key in PLOTTED_KEYS or is_time_key(key)


def time_keys(run: RunData) -> list[str]:
    """The per-phase timing keys present in the run: the known phases in order, then any others."""
    present = {k for row in run.metrics for k, v in row.items()
               if is_time_key(k) and number(v) is not None}
    known = [key for key, _, _ in TIME_PHASES if key in present]
    extra = sorted(present.difference(known))
    return known + extra


def _new_figure(nrows: int, width: float, height: float, sharex: bool = False) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _side_by_side(ncols: int, height: float = 3.8) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(5.2 * ncols if ncols > 1 else 7.0, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _round_axis(ax: Axes, run: RunData) -> None:
    """Rounds on x: integer ticks, and every finished round in view, so all per-round plots align."""
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(run.rounds[0] - 0.5, run.rounds[-1] + 0.5)


def judge_is_gold(run: RunData) -> bool:
    """The run's judge is the task's gold reward (its reward and gold series are the same numbers)."""
    if not run.config:  # no config.yaml: unknown, the judge's reward is shown as such
        return False
    judge = run.config.get("judge", {})  # absent from a config: the default judge, the task's gold reward
    return isinstance(judge, dict) and judge.get("kind", "gold") == "gold"


def judge_name(run: RunData) -> str:
    """The judge as the config names it: ``gold (task sort)``, ``function 'my.py:score'``, ``llm 'model'``, ..."""
    judge = run.config.get("judge", {})
    if not isinstance(judge, dict):
        return "the judge"
    kind = str(judge.get("kind", "gold"))
    detail = next((judge[k] for k in ("callable", "model", "path", "task") if judge.get(k)), None)
    if kind == "gold":
        return f"gold reward (task {detail or run.config.get('task')})"
    return f"{kind} '{detail}'" if detail is not None else kind


def responses_per_round(run: RunData) -> int | None:
    """Held-out responses behind each round's mean reward: prompts.num_eval × eval.samples_per_prompt."""
    prompts, evaluation = run.config.get("prompts"), run.config.get("eval")
    if isinstance(prompts, dict) and isinstance(evaluation, dict):
        return int(prompts.get("num_eval", 0)) * int(evaluation.get("samples_per_prompt", 1)) or None
    return None


def _reward_series(run: RunData) -> list[tuple[str, str, str, str]]:
    """(mean key, std key, name, colour) of the rewards the run has: the judge's, then the gold one;
    one panel when the judge is the gold reward."""
    if judge_is_gold(run):
        series = [(keys.GOLD_REWARD_MEAN, keys.GOLD_REWARD_STD, "gold reward (the judge)", ORANGE)]
    else:
        series = [(keys.REWARD_MEAN, keys.REWARD_STD, "judge reward", BLUE),
                  (keys.GOLD_REWARD_MEAN, keys.GOLD_REWARD_STD, "gold reward", ORANGE)]
    return [s for s in series if run.series(s[0])[1]]


def _mean_half_widths(stds: list[float], n: int) -> list[float]:
    """95 % t-interval half-widths of means over ``n`` responses with population stds ``stds``."""
    t = student_t_quantile(0.95, n - 1)
    return [t * sd * math.sqrt(n / (n - 1)) / math.sqrt(n) for sd in stds]


def reward_plot(run: RunData) -> Figure | None:
    """Mean held-out reward per round with its 95 % confidence band; one panel per reward (their
    scales differ)."""
    series = _reward_series(run)
    if not series:
        return None
    fig, axes = _side_by_side(len(series))
    for ax, (mean_key, std_key, name, colour) in zip(axes, series, strict=True):
        rounds, means = run.series(mean_key)
        ax.plot(rounds, means, marker="o", color=colour, label="mean")
        with_std = run.points(mean_key, std_key)
        n = responses_per_round(run)
        if len(with_std) == len(rounds) and n is not None and n > 1:
            half = _mean_half_widths([values[1] for _, values in with_std], n)
            if len(rounds) > 1:
                ax.fill_between(rounds, [m - h for m, h in zip(means, half, strict=True)],
                                [m + h for m, h in zip(means, half, strict=True)],
                                color=colour, alpha=0.18, linewidth=0, label="95% CI of the mean")
            else:  # a band needs two points; one round gets an error bar
                ax.errorbar(rounds, means, yerr=half, color=colour, capsize=4, fmt="none", label="95% CI of the mean")
        best_rounds, best = run.series(BEST_OF_N_KEYS[mean_key])
        if best:
            n = next((number(row.get(keys.BEST_OF_N)) for row in run.metrics if keys.BEST_OF_N in row), None)
            ax.plot(best_rounds, best, marker="s", linestyle="--", color=GREY,
                    label=f"best-of-{n:.0f} (baseline)" if n else "best-of-N (baseline)")
        ax.set_title(name[0].upper() + name[1:] + " per round")
        if mean_key == keys.REWARD_MEAN:
            ax.text(0.01, 0.01, f"judge: {judge_name(run)}", transform=ax.transAxes, fontsize=8, color=GREY)
        ax.set_ylabel(f"{name} (held-out mean)")
        _round_axis(ax, run)
        ax.legend(loc="best")
    return fig


def frontier_plot(run: RunData) -> Figure | None:
    """Reward against KL(policy ‖ starting policy): how much reward each nat of drift bought."""
    panels = [(name, colour, run.points(keys.KL, mean_key)) for mean_key, _, name, colour in _reward_series(run)]
    panels = [panel for panel in panels if len(panel[2]) >= 2]  # one point is no trade-off
    if not panels:
        return None
    fig, axes = _side_by_side(len(panels))
    for ax, (name, colour, points) in zip(axes, panels, strict=True):
        ax.plot([kl for _, (kl, _) in points], [reward for _, (_, reward) in points],
                marker="o", color=colour, alpha=0.9)
        for k, (kl, reward) in points:
            ax.annotate(f"r{k}", (kl, reward), textcoords="offset points", xytext=(5, 5), fontsize=8,
                        color="#333333")
        ax.set_title(f"{name[0].upper() + name[1:]} vs KL")
        ax.set_xlabel("KL(policy ‖ starting policy) (nats)")
        ax.set_ylabel(f"{name} (held-out mean)")
    return fig


def proxy_gold_plot(run: RunData) -> Figure | None:
    """The judge's (proxy) reward and the task's gold reward on one round axis, each on its own scale.

    Only for runs whose judge is not the gold reward itself: over-optimization of a learned or
    heuristic judge shows as the proxy climbing while the gold reward stalls or falls.
    """
    if judge_is_gold(run):
        return None
    proxy, gold = run.series(keys.REWARD_MEAN), run.series(keys.GOLD_REWARD_MEAN)
    if len(proxy[1]) < 2 or len(gold[1]) < 2:
        return None
    fig, (ax,) = _new_figure(1, 7.0, 3.8)
    ax.plot(*proxy, marker="o", color=BLUE, label="proxy (judge) reward")
    ax.set_ylabel("proxy reward (held-out mean)", color=BLUE)
    twin = ax.twinx()
    twin.plot(*gold, marker="s", color=ORANGE, label="gold reward")
    twin.set_ylabel("gold reward (held-out mean)", color=ORANGE)
    twin.grid(False)
    ax.set_title("Proxy vs gold reward per round")
    _round_axis(ax, run)
    ax.legend(handles=ax.get_lines() + twin.get_lines(), loc="best")
    return fig


def entanglement_plot(run: RunData) -> Figure | None:
    """Cosine of ∇log π(chosen), ∇log π(rejected) and ⟨g_c, g_r⟩ / min(‖g_c‖², ‖g_r‖²) over steps."""
    logs = _round_logs(run)
    panels = [(key, label) for key, label in ((keys.GRAD_COSINE, "cos(g_c, g_r)"),
                                              (keys.GRAD_RATIO, "⟨g_c,g_r⟩ / min(‖g_c‖²,‖g_r‖²)"))
              if any(key in log.series for log in logs)]
    if not panels:
        return None
    fig, axes = _new_figure(len(panels), 9.0, 0.8 + 2.3 * len(panels), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        _plot_segments(ax, logs, key, PURPLE, marker="o")
        if key == keys.GRAD_RATIO:
            # Above 1 the chosen and rejected log-probs move in the same direction.
            ax.axhline(1.0, color=VERMILLION, linestyle="--", linewidth=1, label="1: entangled above")
            ax.legend(loc="best")
        ax.set_ylabel(label)
        for log in logs[1:]:
            ax.axvline(log.start + 0.5, color=GREY, linestyle=":", linewidth=1.2)
    axes[0].set_title("Gradient entanglement on the probe pairs (rounds end to end)")
    axes[-1].set_xlabel("optimizer step (all rounds)")
    return fig


def _fraction_lines(run: RunData, lines: list[tuple[str, str, str]], title: str, ylabel: str,
                    ylim: tuple[float, float], no_change: float | None = None) -> Figure | None:
    """One line per (metric key, label, colour) that the run has, over rounds; None if it has none."""
    lines = [(key, label, colour) for key, label, colour in lines if run.series(key)[1]]
    if not lines:
        return None
    fig, (ax,) = _new_figure(1, 7.0, 3.8)
    for key, label, colour in lines:
        ax.plot(*run.series(key), marker="o", color=colour, label=label)
    if no_change is not None:
        ax.axhline(no_change, color=GREY, linestyle="--", linewidth=1, label=f"no change ({no_change})")
    ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    _round_axis(ax, run)
    ax.legend(loc="best")
    return fig


def logp_shift_plot(run: RunData) -> Figure | None:
    """Per round, the fraction of its training pairs whose chosen log-prob fell / rejected rose."""
    return _fraction_lines(run, [(keys.CHOSEN_LOGP_FELL_FRAC, "chosen log-prob fell", VERMILLION),
                                 (keys.REJECTED_LOGP_ROSE_FRAC, "rejected log-prob rose", PURPLE),
                                 (keys.BOTH_LOGP_FELL_FRAC, "both fell", GREY)],
                           "Log-prob shifts of each round's pairs", "fraction of the round's pairs", (-0.03, 1.03))


def win_rate_plot(run: RunData) -> Figure | None:
    """Held-out win rate against the starting policy and against the previous round."""
    return _fraction_lines(run, [(keys.WIN_RATE_VS_INITIAL, "vs round 0", BLUE),
                                 (keys.WIN_RATE_VS_PREVIOUS, "vs previous round", ORANGE)],
                           "Win rate per round", "win rate (ties count ½)", (0, 1), no_change=0.5)


def length_plot(run: RunData) -> Figure | None:
    """Mean response length per round (reward hacking often shows up as length growth first)."""
    rounds, lengths = run.series(keys.LENGTH_MEAN)
    if not lengths:
        return None
    fig, (ax,) = _new_figure(1, 7.0, 3.8)
    ax.plot(rounds, lengths, marker="o", color=GREEN)
    # From 0, with headroom: a flat line would otherwise sit on the top edge, its markers cut.
    ax.set_ylim(0, max(lengths) * 1.15 or 1.0)
    ax.set_title("Response length per round")
    ax.set_ylabel("mean length (tokens)")
    _round_axis(ax, run)
    return fig


@dataclass(frozen=True)
class _RoundLog:
    """One round's step log shifted onto the global step axis: key -> (global steps, values)."""

    round: int
    start: float  # global step at which the round begins (the previous rounds' total steps)
    end: float
    series: dict[str, tuple[list[float], list[float]]]


def _round_logs(run: RunData) -> list[_RoundLog]:
    """The rounds' step logs laid end to end.

    Each round's trainer counts steps from 1, so round k's steps are shifted by the steps of the
    rounds before it. Rows without a step, and non-numeric values, are skipped.
    """
    logs = []
    offset = 0.0
    for k in sorted(run.train_logs):
        series: dict[str, tuple[list[float], list[float]]] = {}
        last = 0.0
        for row in run.train_logs[k]:
            step = number(row.get(keys.STEP))
            if step is None:
                continue
            last = max(last, step)
            for key, value in row.items():
                value = number(value)
                if value is not None and key != keys.STEP:
                    xs, ys = series.setdefault(key, ([], []))
                    xs.append(offset + step)
                    ys.append(value)
        if series:
            logs.append(_RoundLog(k, offset, offset + last, series))
            offset += last
    return logs


def _plot_segments(ax: Axes, logs: list[_RoundLog], key: str, colour: str, label: str | None = None,
                   **style: Any) -> None:
    """One line per round, so no line joins the end of a round to the start of the next."""
    for i, log in enumerate(log for log in logs if key in log.series):
        ax.plot(*log.series[key], color=colour, label=label if i == 0 else None, **style)


def training_plot(run: RunData) -> Figure | None:
    """Loss, reward accuracy and implicit rewards against the global optimizer step."""
    logs = _round_logs(run)
    panels = [(key, label) for key, label in TRAIN_PANELS if any(key in log.series for log in logs)]
    if not panels:
        return None
    fig, axes = _new_figure(len(panels), 9.0, 0.8 + 2.3 * len(panels), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        if key == keys.REWARD_MARGINS:
            _plot_segments(ax, logs, key, BLUE, "margin")
            # Chosen and rejected rewards tell whether the margin grows by raising the chosen or
            # only by pushing both down (likelihood displacement).
            for side, colour in ((keys.REWARD_CHOSEN, GREEN), (keys.REWARD_REJECTED, VERMILLION)):
                _plot_segments(ax, logs, side, colour, side.split("/")[1], linewidth=1.2, alpha=0.85)
            ax.axhline(0, color=GREY, linewidth=0.8)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            _plot_segments(ax, logs, key, BLUE)
        if key == keys.REWARD_ACCURACIES:
            ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel(label)
        for log in logs[1:]:
            ax.axvline(log.start + 0.5, color=GREY, linestyle=":", linewidth=1.2)
    for log in logs:
        axes[0].text((log.start + log.end + 1) / 2, 1.02, f"round {log.round}", transform=axes[0].get_xaxis_transform(),
                     ha="center", va="bottom", fontsize=8, color="#444444")
    axes[0].set_title("Training curves (rounds end to end)", pad=16)
    axes[-1].set_xlabel("optimizer step (all rounds)")
    return fig


def time_plot(run: RunData) -> Figure | None:
    """Wall-clock seconds per phase per round, stacked."""
    keys = time_keys(run)
    if not keys:
        return None
    styles = {key: (label, colour) for key, label, colour in TIME_PHASES}
    spare = itertools.cycle(SPARE_COLOURS)
    fig, (ax,) = _new_figure(1, 7.0, 3.8)
    bottom = [0.0] * len(run.metrics)
    for key in keys:
        label, colour = styles.get(key) or (key.removeprefix("time/").removesuffix("_s"), next(spare))
        heights = [number(row.get(key)) or 0.0 for row in run.metrics]
        ax.bar(run.rounds, heights, bottom=bottom, color=colour, width=0.6, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_title("Time per phase per round")
    ax.set_ylabel("wall-clock time (s)")
    ax.grid(axis="x", visible=False)
    _round_axis(ax, run)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def reward_caption(run: RunData) -> str:
    """The reward plot's caption: only what the plot shows (a gold panel, a best-of-N line), and the judge."""
    n = responses_per_round(run)
    parts = ["Mean reward of the policy's responses to the held-out prompts per round" + (
        f" ({n} a round); the band is the 95% confidence interval of that mean (t-interval over the responses)."
        if n is not None and n > 1 else ".")]
    if judge_is_gold(run):
        parts.append(f"The judge is the task's gold reward ({judge_name(run)}): the reward optimized is the true one.")
    else:
        parts.append(f"Judge: {judge_name(run)}, the reward that was optimized.")
        if run.series(keys.GOLD_REWARD_MEAN)[1]:
            parts.append("The gold reward (the built-in task's) is the true objective.")
    if any(run.series(key)[1] for key in BEST_OF_N_KEYS.values()):
        parts.append("Dashed grey: the best-of-N baseline (N samples per prompt, the judge's favourite kept).")
    return " ".join(parts)


# (file name, title, caption (or the run's caption), builder), in the order the report shows them.
PLOTS: tuple[tuple[str, str, str | Callable[[RunData], str], Callable[[RunData], Figure | None]], ...] = (
    ("reward.png", "Reward per round", reward_caption, reward_plot),
    ("reward_vs_kl.png", "Reward vs KL",
     ("Reward against the estimated KL divergence from the starting policy (nats per response), one point "
      "per round: up and to the left is a better trade-off."),
     frontier_plot),
    ("proxy_vs_gold.png", "Proxy vs gold reward",
     ("The judge's reward (the proxy that was optimized) and the task's gold reward per round, each on its "
      "own axis: a proxy that keeps rising while the gold reward stalls or falls is over-optimization."),
     proxy_gold_plot),
    ("win_rate.png", "Win rate per round",
     ("Fraction of held-out prompts where the round's response out-scores the starting policy's (or the "
      "previous round's) under the judge; 0.5 means no change."),
     win_rate_plot),
    ("length.png", "Response length per round", "Mean response length on the held-out prompts, in tokens.",
     length_plot),
    ("training.png", "Training curves",
     ("Per-step training loss, preference accuracy of the implicit reward, and implicit-reward margin "
      "(with the chosen and rejected rewards), rounds laid end to end; dotted lines mark round boundaries."),
     training_plot),
    ("time.png", "Time per phase", "Wall-clock seconds spent in each phase of each round.", time_plot),
    ("entanglement.png", "Gradient entanglement",
     ("On a fixed probe set of training pairs: cosine of the gradients of the chosen and rejected log-probs, "
      "and ⟨g_c, g_r⟩ / min(‖g_c‖², ‖g_r‖²); above 1, a margin step moves both log-probs the same way "
      "(Yuan et al. 2024)."),
     entanglement_plot),
    ("logp_shift.png", "Log-prob shifts per round",
     ("Fraction of each round's training pairs whose chosen log-prob fell, or rejected log-prob rose, "
      "from the round-start policy to the trained one."),
     logp_shift_plot),
)


def render_plots(run: RunData) -> list[Plot]:
    """Every plot the run has the data for, as PNG bytes (plots without data are left out)."""
    plots = []
    with matplotlib.rc_context(STYLE):
        for filename, title, caption, build in PLOTS:
            fig = build(run)
            if fig is None:
                continue
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", facecolor="white")
            text = caption(run) if callable(caption) else caption
            plots.append(Plot(filename, title, text, buffer.getvalue(), wide=fig.get_figwidth() > 8))
    return plots
