"""Marker-delimited sections of a shared results page: only the named section changes."""

from pathlib import Path

import pytest

from selm.errors import DataError
from selm.report.sections import read_section, replace_section


def test_create_append_and_replace_only_the_section(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "results.md"
    replace_section(page, "study", "## Study\n\nfirst")
    assert page.read_text() == "# Results\n\n<!-- study:begin -->\n## Study\n\nfirst\n<!-- study:end -->\n"

    # Another writer's text before and after, and its own section, survive a rewrite.
    page.write_text("# Results\n\nintro\n\n" + page.read_text().split("\n\n", 1)[1] + "\nafter\n")
    replace_section(page, "gemma", "## Gemma\n\ng1")
    replace_section(page, "study", "## Study\n\nsecond")
    text = page.read_text()
    assert text == ("# Results\n\nintro\n\n<!-- study:begin -->\n## Study\n\nsecond\n<!-- study:end -->\n\nafter\n\n"
                    "<!-- gemma:begin -->\n## Gemma\n\ng1\n<!-- gemma:end -->\n")
    assert read_section(page, "study") == "## Study\n\nsecond"
    assert read_section(page, "gemma") == "## Gemma\n\ng1"
    assert read_section(page, "other") is None
    assert read_section(tmp_path / "absent.md", "study") is None


@pytest.mark.parametrize("text", ["<!-- study:begin -->\nx\n",
                                  "<!-- study:end -->\nx\n<!-- study:begin -->\n",
                                  "<!-- study:begin -->a<!-- study:end --><!-- study:begin -->b<!-- study:end -->"])
def test_broken_markers_are_a_data_error(tmp_path: Path, text: str) -> None:
    page = tmp_path / "results.md"
    page.write_text(text)
    with pytest.raises(DataError, match="results.md: section 'study'"):
        replace_section(page, "study", "new")
    assert page.read_text() == text
