"""annotate: send the rows that need a human to Label Studio and take their labels back.

The stage needs the whole stream. It selects the rows that need a human (unlabelled rows, an audit sample
of source-labelled rows, or all rows), makes sure each is a task of the dataset's Label Studio project
(bulk import, row id in the task data, never imported twice — the project is read back first, so an
interrupted push run again imports only what is missing; an import whose answer is lost is checked against
the project before anything is resent), then pulls an export snapshot and maps every
non-cancelled annotation back to its row.

Until the configured share of the selected rows is labelled (`min_coverage`) it stops the run cleanly with
`PipelinePaused` ("N tasks awaiting annotation at URL — run again after labelling"). Once enough is
labelled it aggregates (majority vote, ties left unresolved and listed, or Dawid–Skene), writes the raw
annotations and the agreement figures into its work folder, and passes every row on with `label` filled
or replaced by the aggregated human label and `label_source` saying where the label came from
("annotation", "source" or null).

Files in the stage's work folder (for the version): `annotations.parquet` (one row per annotation),
`annotations_aside.parquet` (annotations whose choice is not in the label set — reported, not used),
`labels.parquet` (per row: aggregated label, method, support, votes, unresolved) and `agreement.json`.
The stage never trusts its own memory of the server: every run asks Label Studio for the project's state.
Label Studio is reached only through `pipeline.labelstudio`. What the gate and the manifest need (coverage,
aggregation, agreement) is handed on as a typed `schemas.summaries.AnnotationSummary`.

Modules: `config` (the section), `selection` (which rows), `labelling` (the labelling interface),
`export` (snapshot → annotations), `agreement` (aggregation and agreement statistics), `stage` (the stage).
"""
from stages.annotate.agreement import aggregate  # noqa: F401 (the package's public names)
from stages.annotate.config import Config  # noqa: F401
from stages.annotate.export import ANNOTATIONS_SCHEMA, annotations_from_export, write_annotations  # noqa: F401
from stages.annotate.labelling import FROM_NAME, MULTI_SEP, TO_NAME, instructions_html, label_config  # noqa: F401
from stages.annotate.selection import read_table, select_rows  # noqa: F401
from stages.annotate.stage import VERSION_FILES, AnnotateStage  # noqa: F401
