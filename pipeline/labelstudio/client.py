"""The one module through which Label Studio is reached.

Everything the pipeline asks of Label Studio (projects, tasks, predictions, export snapshots, users) goes
through `LabelStudioClient`, a thin layer over the official SDK (`label_studio_sdk.LabelStudio`, 2.x) that
adds what the pipeline needs around it:

- bounded retries with exponential backoff on connection failures, timeouts and 5xx answers, after which
  a one-line `LabelStudioUnreachable` names the URL;
- a write that must not happen twice (create a project, an export snapshot; import tasks, in the stage) is
  never blindly resent: after an ambiguous failure the server is asked whether it landed (`write`);
- a rejected token (401/403) is said so (`LabelStudioAuthError`), naming where the token came from;
- the token is never part of a log line, an exception message, a repr or a manifest: `Credentials` hides
  it and every message is scrubbed of it (before an error page is cut short, so no piece of it is left);
- legacy tokens and personal access tokens both work: the SDK recognises a PAT (a JWT refresh token) and
  exchanges it for short-lived access tokens itself (`label_studio_sdk.tokens.client_ext`).

Where the credentials come from: `pipeline.labelstudio.credentials`.
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Callable, Iterable, TypeVar

import httpx

from pipeline.errors import UserError
from pipeline.labelstudio.credentials import Credentials

T = TypeVar("T")


class LabelStudioError(UserError):
    """Label Studio answered something the pipeline cannot go on with; the message names the URL."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LabelStudioUnreachable(LabelStudioError):
    """No answer from Label Studio after the bounded retries."""


class LabelStudioAuthError(LabelStudioError):
    """Label Studio rejected the API token."""


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return " ".join(text.split())  # one line


def _detail(body: Any, secrets: Iterable[str] = (), limit: int = 300) -> str:
    """The gist of an error answer, on one line, scrubbed of the secrets *before* it is cut short (a cut
    through the middle of a token would leave a piece of it that no longer matches)."""
    text = ""
    if isinstance(body, dict):
        for key in ("detail", "validation_errors", "message", "error"):
            if body.get(key):
                text = body[key] if isinstance(body[key], str) else json.dumps(body[key], ensure_ascii=False)
                break
        else:
            text = json.dumps(body, ensure_ascii=False)
    else:
        text = str(body)
    text = _scrub(text, secrets)
    return text if len(text) <= limit else text[:limit] + " …"


class LabelStudioClient:
    """A Label Studio server, reached through the SDK with retries and token hygiene."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        retries: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.credentials = credentials
        self.url = credentials.url
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._secrets = [credentials.api_key]
        self.warnings: list[str] = []  # things worth a line in the report that did not stop the work
        from label_studio_sdk import LabelStudio
        from label_studio_sdk.core.api_error import ApiError

        self._ApiError = ApiError
        try:
            # max_retries=0: the retries are ours (bounded, and not for non-idempotent requests).
            self.sdk = LabelStudio(base_url=self.url, api_key=credentials.api_key, timeout=timeout_s, max_retries=0)
        except ApiError as exc:  # an expired or malformed personal access token is refused right here
            raise self._auth_error(exc) from None

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    # -- plumbing ------------------------------------------------------------------------------------------

    def _auth_error(self, exc: Any) -> LabelStudioAuthError:
        detail = _detail(getattr(exc, "body", ""), self._secrets)
        return LabelStudioAuthError(
            f"Label Studio at {self.url} rejected the API token from {self.credentials.origin or 'the config'} "
            f"(HTTP {getattr(exc, 'status_code', '?')}: {detail}) — wrong or expired token",
            getattr(exc, "status_code", None),
        )

    def call(self, what: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run one SDK call with bounded retries; turn every failure into a one-line LabelStudioError.

        A request that may have reached the server (read timeout, 5xx) is retried only when `idempotent`;
        a connection that was never made is always retried.
        """
        ApiError = self._ApiError
        attempts = self.retries + 1
        last, answered, tried = "", False, 0
        for attempt in range(attempts):
            retryable = False
            tried = attempt + 1
            try:
                return fn()
            except ApiError as exc:
                status = exc.status_code or 0
                if status in (401, 403):
                    raise self._auth_error(exc) from None
                last, answered = f"HTTP {status}: {_detail(exc.body, self._secrets)}", True
                if status >= 500 or status in (408, 429):
                    retryable = idempotent
                else:
                    raise LabelStudioError(f"Label Studio at {self.url}: {what} failed ({last})", status) from None
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last, answered = f"cannot connect: {_scrub(str(exc) or type(exc).__name__, self._secrets)}", False
                retryable = True
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                last, answered = f"{type(exc).__name__}: {_scrub(str(exc), self._secrets)}", False
                retryable = idempotent
            except httpx.HTTPError as exc:
                last, answered = f"{type(exc).__name__}: {_scrub(str(exc), self._secrets)}", False
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # an answer that is not LS's API
                raise LabelStudioError(
                    f"Label Studio at {self.url}: unexpected answer to {what} "
                    f"({type(exc).__name__}: {_scrub(str(exc), self._secrets)[:200]}) — is this a Label Studio server?"
                ) from None
            if not retryable:
                break
            if attempt + 1 < attempts:
                self.backoff(attempt)
        tries = f" after {tried} attempts" if tried > 1 else ""
        if answered:
            raise LabelStudioUnreachable(f"Label Studio at {self.url} keeps failing{tries} ({what}: {last})")
        raise LabelStudioUnreachable(f"Label Studio at {self.url} is not reachable{tries} ({what}: {last})"
                                     f"{self.credentials.down_hint()}")

    def backoff(self, attempt: int) -> None:
        """Wait before retry number `attempt + 1`: exponential, capped at 8 s, with jitter."""
        delay = min(self.backoff_s * 2**attempt, 8.0)
        self._sleep(delay * (0.75 + 0.5 * random.random()))

    def write(self, what: str, fn: Callable[[], T], landed: Callable[[], T | None]) -> T:
        """A request that must not take effect twice (a create), made safe to resend.

        After an ambiguous failure (a 5xx, a timeout, a dropped answer: the server may have done it) it asks
        the server with `landed()` — an idempotent read that returns the result of the earlier attempt, or
        None — and sends the request again only when it did not land. Bounded like `call`; a refusal (4xx)
        is not retried.
        """
        for attempt in range(self.retries + 1):
            try:
                return self.call(what, fn, idempotent=False)
            except LabelStudioUnreachable:  # a refusal (LabelStudioError, 4xx) goes straight up
                if attempt == self.retries:
                    raise
            self.backoff(attempt)
            found = self.call(f"check whether {what} took effect", landed)
            if found is not None:
                return found
        raise AssertionError("unreachable")  # pragma: no cover

    # -- identity ------------------------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """Check the server and the token; return the current user (id, email, username)."""
        u = self.call("who am I", lambda: self.sdk.users.whoami())
        return {"id": u.id, "email": u.email, "username": u.username}

    def users(self) -> dict[int, str]:
        """User id → a name for reports (email, else username, else the id)."""
        users = self.call("list users", lambda: list(self.sdk.users.list()))
        return {u.id: (u.email or u.username or f"user-{u.id}") for u in users}

    def version(self) -> str:
        try:
            v = self.call("version", lambda: self.sdk.versions.get())
            return str(getattr(v, "release", None) or getattr(v, "version", None) or "")
        except LabelStudioError:
            return ""

    # -- projects ------------------------------------------------------------------------------------------

    def get_project(self, project_id: int) -> Any | None:
        try:
            return self.call("get project", lambda: self.sdk.projects.get(id=project_id))
        except LabelStudioError as exc:
            if exc.status == 404:
                return None
            raise

    def projects_titled(self, title: str) -> list[Any]:
        found = self.call("list projects", lambda: list(self.sdk.projects.list(title=title, page_size=100)))
        return [p for p in found if p.title == title]

    def ensure_project(
        self,
        title: str,
        label_config: str,
        *,
        stored_id: int | None = None,
        description: str = "",
        instructions: str = "",
        maximum_annotations: int = 1,
        show_predictions: bool = True,
    ) -> tuple[int, bool]:
        """The project for a dataset: the stored id when it still exists with this title, else the one
        project with this title, else a new one. Its labelling config and settings are brought up to date.
        Returns (project id, created).

        Settings: `maximum_annotations` is the overlap (people per task). `show_predictions` is Label
        Studio's `show_collab_predictions`: whether a task's prediction is pre-selected for the annotator
        (off, the annotator starts from nothing). The annotation history panel is off, so an annotator does
        not see who else labelled a task and how."""
        project = None
        if stored_id is not None:
            p = self.get_project(stored_id)
            if p is not None and p.title == title:
                project = p
        if project is None:
            same = self.projects_titled(title)
            if len(same) > 1:
                ids = ", ".join(str(p.id) for p in same)
                raise LabelStudioError(
                    f"Label Studio at {self.url} has {len(same)} projects titled {title!r} (ids {ids}); "
                    f"delete the extra ones or set annotate.project_title"
                )
            project = same[0] if same else None
        settings = dict(
            label_config=label_config,
            description=description,
            expert_instruction=instructions,
            show_instruction=bool(instructions),
            maximum_annotations=maximum_annotations,
            show_collab_predictions=show_predictions,
            show_annotation_history=False,
        )
        if project is None:

            def landed() -> Any | None:
                found = [p for p in self.sdk.projects.list(title=title, page_size=100) if p.title == title]
                return found[0] if len(found) == 1 else None

            created = self.write(
                "create project", lambda: self.sdk.projects.create(title=title, show_skip_button=True, **settings), landed
            )
            return int(created.id), True
        changed = {
            k: v for k, v in settings.items() if (getattr(project, k, None) or ("" if isinstance(v, str) else v)) != v
        }
        if changed:
            try:
                self.call("update project", lambda: self.sdk.projects.update(id=project.id, **changed))
            except LabelStudioError as exc:
                if exc.status != 400:
                    raise
                # Label Studio refuses a config that existing annotations contradict (edited in the UI):
                # keep the project as it is; annotations outside our label set are set aside when pulled.
                self.warnings.append(f"project {project.id} settings not updated ({', '.join(sorted(changed))}): {exc}")
        return int(project.id), False

    def use_predictions(self, project_id: int, model_version: str) -> None:
        """Pre-select the predictions of `model_version` for annotators (the project's model version; Label
        Studio accepts it only once predictions of that version are in the project)."""
        project = self.get_project(project_id)
        if project is not None and getattr(project, "model_version", None) != model_version:
            self.call("set the project's model version",
                      lambda: self.sdk.projects.update(id=project_id, model_version=model_version))

    # -- tasks ---------------------------------------------------------------------------------------------

    def _all_tasks(self, project_id: int, fields: str, page_size: int) -> list[Any]:
        """Every task of a project, page by page, up to the total the server reports. (The SDK's own pager
        asks for one page past the end, which Label Studio answers with a 404 and logs as an error with a
        traceback, on every call.)"""
        out: list[Any] = []
        page = 1
        while True:
            answer = self.sdk.tasks.list(project=project_id, fields=fields, page=page, page_size=page_size)
            items = list(answer.items or [])
            out.extend(items)
            total = getattr(answer.response, "total", None)
            if not items or total is None or len(out) >= int(total):
                return out
            page += 1

    def tasks(self, project_id: int, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every task of a project: id, data, meta, total (non-cancelled) and cancelled annotation counts."""

        def fetch() -> list[dict[str, Any]]:
            return [
                {
                    "id": int(t.id),
                    "data": dict(t.data or {}),
                    "meta": dict(getattr(t, "meta", None) or {}),
                    "total_annotations": int(getattr(t, "total_annotations", 0) or 0),
                    "cancelled_annotations": int(getattr(t, "cancelled_annotations", 0) or 0),
                }
                for t in self._all_tasks(project_id, "task_only", page_size)
            ]

        return self.call("list tasks", fetch)

    def annotation_state(self, project_id: int, page_size: int = 1000) -> list[tuple]:
        """(task id, annotation id, updated_at, cancelled) for every annotation: cheap to compare."""

        def fetch() -> list[tuple]:
            out = []
            for t in self._all_tasks(project_id, "all", page_size):
                for a in getattr(t, "annotations", None) or []:
                    a = a if isinstance(a, dict) else a.dict()
                    out.append((int(t.id), int(a["id"]), str(a.get("updated_at")), bool(a.get("was_cancelled"))))
            return out

        return self.call("list annotations", fetch)

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """One bulk import request (Label Studio stores it in one transaction). Returns the new task ids.

        Not resent here on an ambiguous failure: `import_missing` re-reads the project and imports what is
        missing.
        """
        resp = self.call(
            f"import {len(tasks)} tasks",
            lambda: self.sdk.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True),
            idempotent=False,
        )
        return [int(i) for i in (getattr(resp, "task_ids", None) or [])]

    def import_missing(self, project_id: int, tasks: list[dict[str, Any]], key: str = "row_id",
                       batch_size: int = 500, existing: list[dict[str, Any]] | None = None) -> dict[str, int]:
        """Import the tasks whose `data[key]` no task of the project has yet, in bulk batches; safe to
        interrupt and run again, and never a task twice: after an ambiguous failure the project is read
        again and only what is not there is resent. `existing`: the project's tasks (`tasks()`) where the
        caller has just read them (one listing fewer). Returns {selected, already_in_project, imported}."""
        present = {t["data"].get(key) for t in (self.tasks(project_id) if existing is None else existing)}
        todo = [t for t in tasks if t["data"][key] not in present]
        imported = 0
        for start in range(0, len(todo), batch_size):
            pending = todo[start : start + batch_size]
            for attempt in range(self.retries + 1):
                try:
                    imported += len(self.import_tasks(project_id, pending))
                    break
                except LabelStudioUnreachable:  # a 5xx, a timeout, a lost answer: stored or not, we cannot tell
                    if attempt == self.retries:
                        raise
                self.backoff(attempt)
                present = {t["data"].get(key) for t in self.tasks(project_id)}
                imported += sum(1 for t in pending if t["data"][key] in present)
                pending = [t for t in pending if t["data"][key] not in present]
                if not pending:
                    break
        return {"selected": len(tasks), "already_in_project": len(tasks) - len(todo), "imported": imported}

    def export_snapshot(self, project_id: int, timeout_s: float = 600) -> list[dict[str, Any]]:
        """Export every task with its annotations as a snapshot (JSON), then delete the snapshot."""
        exports = self.sdk.projects.exports
        title = f"sftpipe pull {os.getpid()}-{time.time_ns()}"  # unique: an ambiguous create is found again by it

        def landed() -> Any | None:
            return next((e for e in exports.list(id=project_id) if e.title == title), None)

        snap = self.write("create export snapshot", lambda: exports.create(id=project_id, title=title), landed)
        try:
            start = time.monotonic()
            while snap.status not in ("completed", "failed"):
                if time.monotonic() - start > timeout_s:
                    raise LabelStudioError(f"Label Studio at {self.url}: export snapshot {snap.id} not ready after {timeout_s:.0f} s")
                time.sleep(0.5)
                snap = self.call("poll export snapshot", lambda: exports.get(id=project_id, export_pk=snap.id))
            if snap.status == "failed":
                raise LabelStudioError(f"Label Studio at {self.url}: export snapshot {snap.id} failed")
            raw = self.call(
                "download export snapshot",
                lambda: b"".join(exports.download(id=project_id, export_pk=snap.id, export_type="JSON")),
            )
        finally:
            try:
                self.call("delete export snapshot", lambda: exports.delete(id=project_id, export_pk=snap.id))
            except LabelStudioError:
                pass
        try:
            return json.loads(raw)
        except ValueError:
            raise LabelStudioError(f"Label Studio at {self.url}: export snapshot is not valid JSON") from None
