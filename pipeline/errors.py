"""Errors a user can act on. The CLI prints them as one line (no traceback unless --debug)."""


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
