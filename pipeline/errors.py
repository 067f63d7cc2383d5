"""Errors a user can act on. The CLI prints them as one line (no traceback unless --debug)."""


class UserError(Exception):
    """Bad input, bad config or a state the user must fix; the message says what and where."""
