"""The command line's user errors: mistakes the person at the prompt can fix.

A subcommand raises `UsageError` for a bad path, an unreachable server or a bad option
value; `framedrift`'s `main` prints its message as one line and exits 2, no traceback.
"""

from __future__ import annotations


class UsageError(Exception):
    """A path, server address or option value the user gave is wrong; the message says which."""
