"""build_report on synthetic run directories: files, embedded plots, tables, escaping, atomicity."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from selm.errors import UserError
from selm.report import build_report
from selm.report.content import MISSING, format_objective, format_value

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = {"reward.png", "reward_vs_kl.png", "win_rate.png", "length.png", "training.png", "time.png"}
GOLD = [0.25, 0.4, 0.55, 0.73412]  # gold_reward_mean per round; round 3 formats as 0.734
SCRIPT = "<script>alert('x')</script> & <b>bold</b>"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _metrics_row(k: int) -> dict:
    """A full metrics row of round k, as the loop writes it."""
    row = {"round": k, "reward_mean": 0.1 + 0.2 * k, "reward_std": 0.05, "gold_reward_mean": GOLD[k],
           "gold_reward_std": 0.1, "kl": 0.0 if k == 0 else 0.8 * k, "length_mean": 12.0 + k, "eos_rate": 0.9,
           "distinct_2": 0.5, "time/eval_s": 1.5, "tokens_per_s/eval": 300.0, "peak_memory_gb": 1.25,
           "win_rate_vs_initial": None if k == 0 else 0.5 + 0.1 * k,
           "win_rate_vs_previous": None if k == 0 else 0.55, "diag/entropy": 2.0 - 0.1 * k}
    if k > 0:
        row.update({"pairs/tie_rate": 0.1, "pairs/count": 64, "pairs/margin_mean": 0.3, "train/loss": 0.69 - 0.1 * k,
                    "train/rewards/accuracies": 0.6 + 0.1 * k, "train/rewards/margins": 0.1 * k,
                    "train/rewards/chosen": 0.05 * k, "time/sample_s": 4.0, "time/judge_s": 0.5,
                    "time/reference_s": 0.7, "time/train_s": 6.0, "tokens_per_s/sample": 900.0,
                    "tokens_per_s/train": 1500.0})
    return row


def _eval_rows(k: int, n: int = 6) -> list[dict]:
    rows = []
    for i in range(n):
        for j in range(2):  # two samples per prompt; the report shows sample 0
            response = SCRIPT if (k == 3 and i == 0 and j == 0) else f"r{k} p{i} s{j}: 1 2 3"
            rows.append({"prompt_index": i, "sample_index": j, "prompt": f"sort <these> {i}", "response": response,
                         "num_tokens": 10 + k, "finished": True, "reward": 0.1 * k + 0.01 * i,
                         "gold_reward": 0.2 * k, "logprob": -3.0, "initial_logprob": -3.5, "token_ids": [1, 2, 3]})
    return rows


def _train_log(k: int, steps: int = 6) -> list[dict]:
    rows = []
    for s in range(1, steps + 1):
        rows.append({"step": s, "loss": 0.7 - 0.02 * s, "rewards/accuracies": 0.5 + 0.05 * s,
                     "rewards/margins": 0.03 * s, "rewards/chosen": 0.01 * s, "rewards/rejected": -0.02 * s,
                     "learning_rate": 1e-3, "grad_norm": 1.0})
        if s == steps:
            rows.append({"step": s, "eval/loss": 0.6})  # eval entries share the step and carry other keys
    return rows


def _make_run(run: Path) -> Path:
    """A finished run: round 0 + 3 training rounds with every artifact the report reads."""
    run.mkdir(parents=True)
    config = {"name": "sort-selm", "task": "sort", "model_name_or_path": "builtin:sort", "rounds": 3,
              "objective": {"name": "selm", "beta": 0.1, "alpha": 0.001}, "seed": 42}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    _write_jsonl(run / "metrics.jsonl", [_metrics_row(k) for k in range(4)])
    for k in range(4):
        _write_jsonl(run / "rounds" / f"{k:02d}" / "eval.jsonl", _eval_rows(k))
        if k > 0:
            _write_jsonl(run / "rounds" / f"{k:02d}" / "train_log.jsonl", _train_log(k))
    return run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A fresh finished run, for tests that change it."""
    return _make_run(tmp_path / "run")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run with its report built once, for the tests that only read the report."""
    run = _make_run(tmp_path_factory.mktemp("built") / "run")
    build_report(run)
    return run


class _TagBalance(HTMLParser):
    """Counts unclosed and stray tags (void elements excluded) to catch broken markup."""

    VOID: ClassVar[set[str]] = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def test_full_run_writes_every_file(run_dir: Path) -> None:
    folder = build_report(run_dir)
    assert folder == run_dir / "report"
    assert (run_dir / "metrics.jsonl").stat().st_size > 0  # the run's own files are untouched
    assert {p.name for p in folder.iterdir()} == ALL_PLOTS | {"index.html", "report.md"}
    for name in ALL_PLOTS:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    assert _leftovers(run_dir) == []


def test_html_is_self_contained_with_table_and_escaped_examples(built: Path) -> None:
    page = (built / "report" / "index.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(ALL_PLOTS)
    assert not re.search(r'(src|href)="(?!data:|#)', page), "every image and link must be inline or an anchor"
    # Header: name, objective, task, final vs initial gold reward.
    assert "sort-selm" in page and "selm (beta=0.1, alpha=0.001)" in page and "builtin:sort" in page
    assert "0.250 → 0.734" in page
    # Summary table: round 3's gold reward to 3 significant digits, a round-0 win rate as missing.
    row3 = re.search(r"<tr><td>3</td>(.*?)</tr>", page).group(1)
    assert "<td>0.734 ± 0.100</td>" in row3
    assert "<td>0.800</td>" in row3  # win rate vs round 0
    assert re.search(rf"<tr><td>0</td>.*?<td>{MISSING}</td>", page)
    # Numeric keys not shown elsewhere land in the other-metrics table.
    assert "diag/entropy" in page and "tokens_per_s/train" in page and "train/rewards/chosen" in page
    # Examples: the raw script never appears; its escaped form does, beside round 0's response.
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "r0 p0 s0: 1 2 3" in page and "Round 3" in page
    assert "r0 p5 s0" not in page and "r0 p1 s1" not in page  # first 5 prompts, first sample only
    assert "sort &lt;these&gt; 0" in page
    # Config collapsed.
    assert "<details>" in page and "seed: 42" in page
    checker = _TagBalance()
    checker.feed(page)
    assert checker.errors == [] and checker.stack == []


def test_markdown_has_table_image_links_and_escapes(built: Path) -> None:
    text = (built / "report" / "report.md").read_text(encoding="utf-8")
    for name in ALL_PLOTS:
        assert f"]({name})" in text
    assert re.search(r"^\| 3 \| .*\| 0\.734 ± 0\.100 \|", text, flags=re.MULTILINE)
    assert "| round | judge reward | gold reward | KL (nats) |" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "```yaml" in text


def test_round_zero_only_without_optional_keys_or_files(tmp_path: Path) -> None:
    run = tmp_path / "bare"
    _write_jsonl(run / "metrics.jsonl", [{"round": 0, "reward_mean": 0.5, "kl": float("nan")}])
    folder = build_report(run)
    names = {p.name for p in folder.iterdir()}
    assert names == {"index.html", "report.md", "reward.png"}
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert "selm run report: bare" in page and page.count("data:image/png;base64,") == 1
    assert "Example responses" not in page and "Configuration" not in page


def test_non_finite_metrics_are_shown_but_not_plotted(tmp_path: Path) -> None:
    rows = [_metrics_row(0), {**_metrics_row(1), "kl": float("inf"), "train/loss": float("nan"), "diag/x": "text"}]
    _write_jsonl(tmp_path / "metrics.jsonl", rows)
    page = (build_report(tmp_path) / "index.html").read_text(encoding="utf-8")
    assert re.search(r"<tr><td>1</td>.*?<td>inf</td>", page)
    assert "diag/x" not in page  # non-numeric values are not metrics


def test_round_zero_only_with_eval_shows_single_column(tmp_path: Path) -> None:
    run = tmp_path / "r0"
    _write_jsonl(run / "metrics.jsonl", [_metrics_row(0)])
    _write_jsonl(run / "rounds" / "00" / "eval.jsonl", _eval_rows(0))
    page = (build_report(run) / "index.html").read_text(encoding="utf-8")
    assert "Round 0" in page and "Round 3" not in page
    assert "training.png" not in page  # no train logs, no training plot


def test_rebuild_overwrites_in_place(run_dir: Path) -> None:
    build_report(run_dir)
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({**_metrics_row(3), "round": 4, "gold_reward_mean": 0.9}) + "\n")
    page = (build_report(run_dir) / "index.html").read_text(encoding="utf-8")
    assert "0.250 → 0.900" in page
    assert _leftovers(run_dir) == []


def test_rebuild_removes_plots_that_lost_their_data(run_dir: Path) -> None:
    build_report(run_dir)
    _write_jsonl(run_dir / "metrics.jsonl", [_metrics_row(0)])  # as if rebuilt from round 0 only
    shutil.rmtree(run_dir / "rounds")
    folder = build_report(run_dir)
    assert {p.name for p in folder.iterdir()} == {"index.html", "report.md", "reward.png", "length.png", "time.png"}


@pytest.mark.parametrize("content", [None, "", "\n\n", '{"round": 0}\nnot json\n', '{"reward_mean": 1}\n'])
def test_bad_metrics_file_is_a_user_error_naming_it(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "metrics.jsonl").write_text(content)
    with pytest.raises(UserError) as info:
        build_report(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "metrics.jsonl") in message and "\n" not in message
    assert not (tmp_path / "report").exists()


def test_truncated_train_log_line_is_skipped(run_dir: Path) -> None:
    with (run_dir / "rounds" / "03" / "train_log.jsonl").open("a") as f:
        f.write('{"step": 7, "lo')
    with pytest.warns(UserWarning, match="train_log.jsonl:8"):
        folder = build_report(run_dir)
    assert (folder / "training.png").read_bytes().startswith(PNG_MAGIC)


def test_summary_table_reads_the_keys_the_loop_writes(built: Path) -> None:
    """The tie rate column is the loop's ``pairs/tie_rate`` (the report once looked for ``tie_rate``)."""
    text = (built / "report" / "report.md").read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| round | judge reward"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert "tie rate" in columns and "pairs" in columns and "train accuracy" in columns
    row3 = next(line for line in text.splitlines() if line.startswith("| 3 |"))
    assert [c.strip() for c in row3.strip("|").split("|")][columns.index("tie rate")] == "0.100"
    assert "pairs/tie_rate" not in text  # shown in the summary, so not again among the other metrics


def test_eval_row_without_an_eval_rows_keys_is_skipped(run_dir: Path) -> None:
    rows = _eval_rows(3)
    del rows[0]["num_tokens"]  # prompt 0's first sample of the last round
    _write_jsonl(run_dir / "rounds" / "03" / "eval.jsonl", rows)
    with pytest.warns(UserWarning, match=r"eval.jsonl:1: not an eval row \(no key 'num_tokens'\)"):
        folder = build_report(run_dir)
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert "r3 p1 s0: 1 2 3" in page and "r3 p0 s1: 1 2 3" in page  # prompt 0 falls back to its sample 1


@pytest.mark.parametrize("objective, text", [
    ("dpo", "dpo"),
    ({"name": "selm", "beta": 0.01}, "selm (beta=0.01)"),
    ([{"name": "dpo"}, {"name": "sft", "weight": 0.2}], "dpo + 0.2·sft"),
])
def test_format_objective(objective: object, text: str) -> None:
    assert format_objective(objective) == text


@pytest.mark.parametrize("value, text", [
    (0.73412, "0.734"), (0.5, "0.500"), (64.0, "64.0"), (64, "64"), (1234.5, "1230"), (0.99951, "1.00"),
    (0.00123, "0.00123"), (1.5e-5, "1.50e-05"), (2.5e7, "2.50e+07"), (-0.3, "-0.300"), (0.0, "0"),
    (None, MISSING), (math.nan, MISSING), (math.inf, "inf"), ("text", MISSING),
])
def test_format_value_three_significant_digits(value: object, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless chromium not installed")
def test_html_renders_in_headless_chromium(built: Path, tmp_path: Path) -> None:
    page = built / "report" / "index.html"
    shot = tmp_path / "page.png"
    subprocess.run(["chromium", "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={shot}",
                    "--window-size=1280,4000", page.as_uri()], check=True, timeout=60, capture_output=True)
    assert shot.read_bytes().startswith(PNG_MAGIC)


def test_reward_caption_and_panels_say_only_what_the_run_has(tmp_path: Path) -> None:
    from selm.report.load import load_run
    from selm.report.plots import reward_caption, reward_plot

    run = load_run(_make_run(tmp_path / "gold"))  # the default judge: the task's gold reward
    assert "confidence interval" not in reward_caption(run)  # no prompts.num_eval in this config: no band
    config = yaml.safe_load((tmp_path / "gold" / "config.yaml").read_text())
    config.update(prompts={"num_eval": 8}, eval={"samples_per_prompt": 2})
    (tmp_path / "gold" / "config.yaml").write_text(yaml.safe_dump(config))
    run = load_run(tmp_path / "gold")
    caption = reward_caption(run)
    assert "(16 a round); the band is the 95% confidence interval" in caption and "standard deviation" not in caption
    assert "gold reward (task sort)" in caption and "best-of-N" not in caption
    assert len(reward_plot(run).axes) == 1  # the judge's and the gold reward are the same numbers
    config = yaml.safe_load((tmp_path / "gold" / "config.yaml").read_text())
    config["judge"] = {"kind": "function", "callable": "my.py:score"}
    (tmp_path / "gold" / "config.yaml").write_text(yaml.safe_dump(config))
    run = load_run(tmp_path / "gold")
    assert "Judge: function 'my.py:score'" in reward_caption(run) and len(reward_plot(run).axes) == 2
