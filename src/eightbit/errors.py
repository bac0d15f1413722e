"""Exceptions for user mistakes; the CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class EightbitError(ValueError):
    """Base class: something the user gave us (a file, an option, data) is not what we expect.

    The message is kept on one line (runs of whitespace, newlines included, become one space), so
    a reason quoted from a library or a file cannot break the CLI's one-line error.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class ModelFormatError(EightbitError):
    """A saved model directory is missing, corrupt, foreign or of an unsupported version."""
