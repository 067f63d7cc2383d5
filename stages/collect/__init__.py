"""collect: read the configured sources into rows {id, source, source_file, source_line, text, label, meta}.

A row that cannot be read (a line that is not JSON, bytes that do not decode, no text) is rejected with
its reason and location; the run goes on. Ids are stable: the source's own id where the config names an
id field, else a hash of the source name, the text and its occurrence number in that source — so a row
keeps its id (and its split) when other rows are added, removed or reordered.

Reading a source's files into records is `pipeline.sources` (shared with the decontaminate stage, which
reads evaluation sets in the same formats): `config` (the `sources` / `inputs_within` keys), `files`
(finding, checking, digesting and opening a source's files), `readers` (one reader per format), `records`
(an Alpaca / ShareGPT / messages / two-field record onto a `generation` or `chat` payload, with a reason
for every malformed record). This package's `stage` maps records to rows (classification's mapping,
`text_field` / `label_field`, is the stage's own) and assigns ids. A generative row's id is
a hash of the source name, the payload as canonical JSON and its occurrence number.
"""
from pipeline.sources.config import Config, SourceConfig  # noqa: F401 (the package's public names)
from pipeline.sources.files import check_source, file_digest, open_input, peek_columns, resolve_files  # noqa: F401
from stages.collect.stage import CollectStage, CollectSummary  # noqa: F401
