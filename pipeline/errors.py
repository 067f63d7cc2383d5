"""Errors a user can act on. The CLI prints them as one line (no traceback unless --debug)."""
import errno
import os
import re
from pathlib import Path


class UserError(Exception):
    """Bad input, bad config or a state the user must fix; the message says what and where."""


class PipelinePaused(UserError):
    """The run cannot go on until people do something outside it (label rows in Label Studio).

    Not a failure: the executor stops the run cleanly, keeps what the stages before finished (so the next
    run resumes from there), attaches their reports (`stages`) and the CLI prints the funnel so far and the
    message, and exits with its own code (75). Being a UserError, an executor that does not know it
    still prints one line rather than a traceback.
    """

    def __init__(self, message: str, *, stage: str = "", waiting: int = 0, url: str = ""):
        super().__init__(message)
        self.stage = stage
        self.waiting = waiting
        self.url = url
        self.stages: list = []  # the executor's reports of the stages finished before the pause


# What the operating system says when the user's machine, not the code, is the problem: a full disk, a
# read-only or unwritable folder, a name too long. The executor turns these into one line naming the path.
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG,
                         errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOTDIR, errno.EISDIR})


def _errno_of(exc: BaseException) -> int | None:
    """The errno of an OSError; Arrow's file errors carry it only in their text ("... [errno 28] ...")."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    match = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
    return int(match.group(1)) if match else None


def is_user_os_error(exc: BaseException) -> bool:
    """An OSError the user must fix (or a shutil.Error made of them), not a defect."""
    import shutil

    if isinstance(exc, shutil.Error):
        return True
    return isinstance(exc, OSError) and _errno_of(exc) in USER_ERRNOS


def os_error_message(exc: BaseException, where: Path | str | None = None) -> str:
    """One line for an OSError or a shutil.Error (whose argument is a list of (source, target, why)):
    the path and what the system said, never a tuple of tuples. `where`: the folder being written, named
    when the error itself names no file (Arrow's writers do not)."""
    import shutil

    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        errors = exc.args[0]
        first = errors[0]
        target, why = (first[1], first[2]) if isinstance(first, tuple) and len(first) == 3 else ("", str(first))
        more = f" (and {len(errors) - 1} more file(s))" if len(errors) > 1 else ""
        return f"cannot write {target}: {why}{more}".replace("\n", " ")
    number = _errno_of(exc)
    reason = os.strerror(number) if number is not None else str(exc)
    path = getattr(exc, "filename", None)
    if path is not None:
        target = getattr(exc, "filename2", None)
        return f"{path}{f' → {target}' if target is not None else ''}: {reason}".replace("\n", " ")
    if where is not None:
        return f"cannot write under {where}: {reason}".replace("\n", " ")
    return reason.replace("\n", " ")
