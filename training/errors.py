"""Errors that carry a message meant for the user: what is wrong and how to fix it.

The command line prints these as one line (no traceback); everything else is a bug.
"""


class SnnMnistError(Exception):
    """Base for bad-input errors (data, checkpoints, diverged training, ...)."""
