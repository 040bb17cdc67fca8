"""The few failures a user must see: one line on stderr, a non-zero exit."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; its message says what was wrong and how to fix it."""

    exit_code = 1


class UsageError(UserError):
    """Bad command-line arguments or options."""

    exit_code = 2
