"""`sftpipe`: the one command line of sft-pipeline, and the composition root.

`pipeline.cli.project` composes the project the CLI runs — the stages, the quality gate, the `train:`
section — and installs it for `pipeline.config.load_config`; every command imports it when it runs (not
at start-up, so that `--help` stays quick). One module per command group: `run` (validate, run),
`versions`, `report`, `labelstudio` (labelstudio …, annotate …); train's commands are registered from
`train.cli`. `app` puts them together; `console` is what they print with.
"""
from pipeline.cli.app import app, main  # noqa: F401
