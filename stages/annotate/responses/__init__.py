"""Review of responses (generation and chat records) in Label Studio: `annotate.mode` rate, edit, compare.

The annotate stage (`stages.annotate.stage`) hands a run in one of these modes to `run.review`; the rest of
the loop is the classification path's — the same project lookup, idempotent push, pause while tasks await
people, pull from an export snapshot, files under `annotations/`, typed `AnnotationSummary`.

- `rate`: the conversation (turn by turn, roles shown, Label Studio's `Paragraphs` in dialogue layout) and
  the response (plain text); a 1–N `Rating` and configurable flags (`Choices`). Median rating per row with
  its support; a row whose median is below `responses.min_rating`, or that enough annotators flag
  (`responses.flag_share`), goes to rejected.parquet with the figures. Ordinal agreement (`ordinal`).
- `edit`: the response in an editable `TextArea`, prefilled (a pre-annotation); the chosen edit becomes the
  published response, the original kept in the row's `meta.review.original`; rule in `edits`.
- `compare`: preference records (`schemas.preference`) — the two responses side by side in a random but
  stable order; A, B or tie; majority or Dawid–Skene (`annotate.aggregation`), ties listed and set aside; Fleiss' kappa
  (`preferences`).

Modules: `config` (the `annotate.responses` sub-section), `interface` (labelling configs and task data),
`export` (snapshot → one row per annotation, odd ones aside with their reason), `ordinal` (rating
aggregation and agreement), `edits`, `preferences`, `run` (the stage's run in these modes).
"""
