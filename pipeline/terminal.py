"""The Rich console every command prints with (`sftpipe`'s and `sftpipe train`'s), one rule for its width."""
from __future__ import annotations

import os
import sys

from rich.console import Console

# Rich draws 80 columns wherever output is not a terminal (a CI log, `| tee run.log`), which wraps the funnel
# and gate tables cell by cell; a file gets this width instead. COLUMNS, when set, wins as it does in Rich.
FILE_WIDTH = 120


def new_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr): the terminal's width, or FILE_WIDTH when the stream is a file or pipe."""
    stream = sys.stderr if stderr else sys.stdout
    to_file = not (hasattr(stream, "isatty") and stream.isatty())
    return Console(stderr=stderr, width=FILE_WIDTH if to_file and not os.environ.get("COLUMNS") else None)
