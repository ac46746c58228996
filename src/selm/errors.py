"""User-facing errors.

Anything a user can fix (a bad config key, a malformed data row, a missing model path) raises a
``UserError``. The CLI prints its message as one line and exits with code 2; a traceback is shown
only with ``--debug``. Messages name the file, row or key and say what is wrong.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits with code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A config key is unknown, has the wrong type, or a combination of keys is impossible."""


class DataError(UserError):
    """A data file or row is unreadable or invalid."""


class ModelLoadError(UserError):
    """A model or tokenizer cannot be found or loaded."""


class JudgeError(UserError):
    """A judge returned unusable scores (non-numeric, NaN, wrong count) or could not be reached."""
