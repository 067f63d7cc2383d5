"""Where the Label Studio server and its token come from, and how a dataset's project is found again.

`resolve_credentials`: the environment variables the config names, else `LABEL_STUDIO_URL` +
`LABEL_STUDIO_API_KEY`, else the credentials file written by `sftpipe labelstudio start`
(`pipeline.labelstudio.server`). `Credentials` never shows its token (repr, str).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

URL_ENV = "LABEL_STUDIO_URL"
API_KEY_ENV = "LABEL_STUDIO_API_KEY"
# Where `sftpipe labelstudio start` keeps its data and credentials unless told otherwise.
DEFAULT_SERVER_DIR = Path("data/labelstudio")
SERVER_DIR_ENV = "SFTPIPE_LABELSTUDIO_DIR"
CREDENTIALS_FILE = "credentials.json"
PROJECTS_FILE = "projects.json"  # url + title → project id: how a dataset's project is found again


@dataclass(frozen=True)
class Credentials:
    url: str
    api_key: str = field(repr=False)
    origin: str = ""  # where they came from, for messages: "LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY", a file

    def __post_init__(self):
        object.__setattr__(self, "url", self.url.rstrip("/"))

    def __repr__(self) -> str:  # never the key
        return f"Credentials(url={self.url!r}, origin={self.origin!r})"

    def down_hint(self) -> str:
        """What to do when the server does not answer: start the local one, or check the named one."""
        if self.origin.endswith(CREDENTIALS_FILE):  # the local server of `sftpipe labelstudio start`
            folder = Path(self.origin).parent
            option = "" if folder == DEFAULT_SERVER_DIR else f" --data-dir {folder}"
            return f" — is the local server running? Start it with `sftpipe labelstudio start{option}`"
        return f" — is the server at {self.url} up? (it comes from {self.origin or 'the config'})"

    __str__ = __repr__


def server_dir(path: str | Path | None = None) -> Path:
    """The local server's folder: `path`, else $SFTPIPE_LABELSTUDIO_DIR, else data/labelstudio."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(SERVER_DIR_ENV) or DEFAULT_SERVER_DIR)


def read_credentials_file(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read Label Studio credentials {path}: {type(exc).__name__}") from None


def resolve_credentials(
    url_env: str | None = None, api_key_env: str | None = None, local_dir: str | Path | None = None
) -> Credentials:
    """Find the server to talk to. Named variables win; then LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY; then
    the credentials file of the local server started by `sftpipe labelstudio start`."""
    if url_env or api_key_env:
        u, k = url_env or URL_ENV, api_key_env or API_KEY_ENV
        missing = [n for n in (u, k) if not os.environ.get(n)]
        if missing:
            raise UserError(f"the annotate config names {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not set")
        return Credentials(os.environ[u], os.environ[k], f"${u} / ${k}")
    if os.environ.get(URL_ENV) and os.environ.get(API_KEY_ENV):
        return Credentials(os.environ[URL_ENV], os.environ[API_KEY_ENV], f"${URL_ENV} / ${API_KEY_ENV}")
    path = server_dir(local_dir) / CREDENTIALS_FILE
    if path.is_file():
        data = read_credentials_file(path)
        return Credentials(data["url"], data["api_key"], str(path))
    raise UserError(
        f"no Label Studio to talk to: set {URL_ENV} and {API_KEY_ENV} for an existing server, "
        f"or start a local one with `sftpipe labelstudio start` (no {path})"
    )


# -- the stored project ids ----------------------------------------------------------------------------------


def stored_project_id(state_dir: Path, url: str, title: str) -> int | None:
    path = state_dir / PROJECTS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(f"{url.rstrip('/')} {title}")
    except ValueError:
        return None


def store_project_id(state_dir: Path, url: str, title: str, project_id: int) -> None:
    path = state_dir / PROJECTS_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    data = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
    data[f"{url.rstrip('/')} {title}"] = project_id
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
