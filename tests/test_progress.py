"""Progress bars in a log are plain lines; on a terminal, tqdm's own bar."""

import io

from tqdm.auto import tqdm

from selm.progress import LogLineBar, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_in_a_log_writes_whole_lines_without_carriage_returns():
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="sampling", file=log, mininterval=0):
        pass
    lines = [line for line in log.getvalue().splitlines() if line]
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert lines[-1].startswith("sampling: 100%") and "3/3" in lines[-1]


def test_a_log_bar_refreshes_at_most_every_log_interval():
    bar = progress_bar(total=5, file=io.StringIO())
    assert isinstance(bar, LogLineBar) and bar.mininterval == 30.0
    bar.close()
    terminal = progress_bar(total=5, file=Terminal())
    assert type(terminal) is tqdm and not isinstance(terminal, LogLineBar)
    terminal.close()
