"""Reading a source's files into records: what the collect stage (the dataset's `sources`) and the
decontaminate stage (its evaluation sets) both read, so neither imports the other.

Modules: `config` (`SourceConfig`: a source's files, format, encoding and field map; the `sources` /
`inputs_within` keys), `files` (finding, checking, digesting and opening a source's files), `streams`
(a file's bytes decompressed when compressed, and hashed as they are read), `readers`
(one reader per format: each yields (line number, fields, error, raw text) per record), `records` (an
Alpaca / ShareGPT / messages / two-field record onto a `generation` or `chat` payload, with a reason for
every malformed record), `eval_sets` (evaluation sets: a source plus the fields compared, read into one
index that rows are matched against — the decontaminate stage and the gate's re-check). The first four
moved unchanged from `stages/collect/` (so edits made there in parallel branches
follow the rename); classification's mapping (`text_field` / `label_field`) stays collect's own.
"""
