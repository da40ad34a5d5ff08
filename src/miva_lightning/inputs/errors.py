"""The one error type of input checks: its message is one line saying what is wrong and what to change."""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """A bad input (file, value, setting). The message is one line: what is wrong, and what to change."""


class InputFileNotFoundError(InputError, FileNotFoundError):
    """An input file or folder that does not exist (also a `FileNotFoundError`)."""


def _quote(value: Any) -> str:
    return f"'{value}'"
