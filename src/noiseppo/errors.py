"""The one exception type for user mistakes.

A ``UserError`` carries a message that names the bad value and where it came from.
The CLI prints it as a single line on stderr and exits with status 2; anything else
that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from a user: a prompt, a file, a flag or a config value."""
