"""`sftpipe`: the one command line of sft-pipeline, and the composition root.

Importing this package installs the project (`pipeline.cli.project`: the stages, the quality gate, the
`train:` section) that `pipeline.config.load_config` reads configs with. One module per command group:
`run` (validate, run), `versions`, `report`, `labelstudio` (labelstudio …, annotate …); train's commands
are registered from `train.cli`. `app` puts them together; `console` is what they print with.
"""
from pipeline.cli.project import PROJECT  # noqa: F401 (installs the project)
from pipeline.cli.app import app, main  # noqa: F401
