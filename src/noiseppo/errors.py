"""The one exception type for user mistakes.

A ``UserError`` carries a message that names the bad value and where it came from.
The CLI prints it as a single line on stderr and exits with status 2; anything else
that escapes is a bug and keeps its traceback. With ``--debug`` (or ``NOISEPPO_DEBUG=1``) the
one line comes after the full traceback of what caused it (a reward's or a backend's own error).
"""

import os

DEBUG_ENV = "NOISEPPO_DEBUG"
"""Set to 1 (``--debug`` sets it, for the processes a command starts too): tracebacks are shown."""


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class UserError(Exception):
    """Bad input from a user: a prompt, a file, a flag or a config value."""


def first_line(message: object) -> str:
    """The first line of ``str(message)`` (stripped at both ends first), or "" where it is empty:
    a traceback's worth of message would break the one-line rule."""
    text = str(message).strip()
    return text.splitlines()[0] if text else ""


def error_line(error: BaseException) -> str:
    """``error`` in a few words for a one-line message: its message's first line, or its class
    name where it has no message."""
    return first_line(error) or error.__class__.__name__
