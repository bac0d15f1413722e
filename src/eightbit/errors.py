"""Exceptions for user mistakes; the CLI prints them as one line and exits with status 2."""


class EightbitError(ValueError):
    """Base class: something the user gave us (a file, an option, data) is not what we expect."""
