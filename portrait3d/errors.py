"""Errors a user can act on: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message must say what is wrong and, where it helps, what to do; the CLI
    prints it without a traceback (``--verbose`` shows the traceback).
    """

    exit_code = 2
