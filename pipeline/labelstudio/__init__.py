"""Label Studio, the one annotation service: the client every request goes through (`client`), where the
server and its token come from (`credentials`), and a local server's install and lifecycle (`server`).

The annotate stage reaches Label Studio only through this package; nothing here knows a stage.
"""
from pipeline.labelstudio.client import (  # noqa: F401 (the package's public names)
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioUnreachable,
)
from pipeline.labelstudio.credentials import (  # noqa: F401
    API_KEY_ENV,
    CREDENTIALS_FILE,
    DEFAULT_SERVER_DIR,
    PROJECTS_FILE,
    SERVER_DIR_ENV,
    URL_ENV,
    Credentials,
    read_credentials_file,
    resolve_credentials,
    server_dir,
    store_project_id,
    stored_project_id,
)
