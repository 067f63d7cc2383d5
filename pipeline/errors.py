"""Errors a user can act on. The CLI prints them as one line (no traceback unless --debug)."""
import errno


class UserError(Exception):
    """Bad input, bad config or a state the user must fix; the message says what and where."""


class PipelinePaused(UserError):
    """The run cannot go on until people do something outside it (label rows in Label Studio).

    Not a failure: the executor stops the run cleanly, keeps what the stages before finished (so the next
    run resumes from there) and prints the message. Being a UserError, an executor that does not know it
    still prints one line rather than a traceback.
    """

    def __init__(self, message: str, *, stage: str = "", waiting: int = 0, url: str = ""):
        super().__init__(message)
        self.stage = stage
        self.waiting = waiting
        self.url = url


# What the operating system says when the user's machine, not the code, is the problem: a full disk, a
# read-only or unwritable folder, a name too long. The executor turns these into one line naming the path.
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG,
                         errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOTDIR, errno.EISDIR})


def is_user_os_error(exc: BaseException) -> bool:
    """An OSError the user must fix (or a shutil.Error made of them), not a defect."""
    import shutil

    if isinstance(exc, shutil.Error):
        return True
    if not isinstance(exc, OSError):
        return False
    if exc.errno in USER_ERRNOS:
        return True
    # Arrow's file errors carry the errno only in their text: "... [errno 28] No space left on device".
    text = str(exc).lower()
    return any(f"[errno {n}]" in text for n in USER_ERRNOS)


def os_error_message(exc: BaseException) -> str:
    """One line for an OSError or a shutil.Error (whose argument is a list of (source, target, why)):
    the path and what the system said, never a tuple of tuples."""
    import shutil

    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        errors = exc.args[0]
        first = errors[0]
        where, why = (first[1], first[2]) if isinstance(first, tuple) and len(first) == 3 else ("", str(first))
        more = f" (and {len(errors) - 1} more file(s))" if len(errors) > 1 else ""
        return f"cannot write {where}: {why}{more}".replace("\n", " ")
    if isinstance(exc, OSError) and exc.strerror:
        path = exc.filename if exc.filename is not None else ""
        target = f" → {exc.filename2}" if exc.filename2 is not None else ""
        return (f"{path}{target}: {exc.strerror}" if path else exc.strerror).replace("\n", " ")
    return str(exc).replace("\n", " ")
