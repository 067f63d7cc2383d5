"""The config of collect: the top-level `sources` (one `SourceConfig` each) and `inputs_within`."""
from __future__ import annotations

import codecs
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas import SPLITS
from schemas.classification import LabelName


# Generative record formats (pipeline/sources/records.py) and the fields each reads, with their default names.
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "fields": {"prompt": "prompt", "completion": "completion", "system": "system"},
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output", "system": "system",
               "history": "history"},
    "sharegpt": {"conversations": "conversations", "system": "system", "tools": "tools"},
    "messages": {"messages": "messages", "tools": "tools"},
}


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    path: str | list[str] = Field(description="file, folder (HF dataset on disk) or glob; relative to the config "
                                              "file; or an fsspec URL (s3://bucket/*.jsonl) where its filesystem "
                                              "package is installed")
    format: Literal["jsonl", "json", "csv", "tsv", "parquet", "text", "hf_disk"] = Field(
        description="jsonl: an object per line; json: a JSON array of objects (read whole); csv / tsv; parquet; "
                    "text; hf_disk: a Hugging Face dataset saved with save_to_disk")
    encoding: str = "utf-8"  # utf-8 also accepts a byte-order mark
    # csv / tsv
    delimiter: str | None = None  # default "," for csv, tab for tsv
    quoting: Literal["minimal", "none", "all"] = "minimal"
    quotechar: str = '"'
    header: bool = True
    column_names: list[str] | None = Field(None, description="names of the columns when the file has no header")
    # text
    unit: Literal["line", "file"] = "line"  # one document per line, or per file
    pattern: str | None = Field(None, description="regex with named groups (text, label, id, ...) applied to each line")
    # field mapping
    text_field: str = "text"
    label_field: str | None = None
    id_field: str | None = None
    meta_fields: list[str] = Field(default_factory=list)
    label_map: dict[LabelName, LabelName] | None = Field(None, description="rename labels; labels not listed stay as they are")
    # the source's own train / validation / test split (collect carries it as `source_split`; split keeps it)
    split_field: str | None = Field(
        None, description="field holding the source's own split (train / validation / test, or a value split_map "
                          "renames): such a row is published in that split; a row without a value is split by "
                          "`split.ratios` as usual")
    split_map: dict[str, str | None] | None = Field(
        None, description="rename split values ({dev: validation}); a value mapped to null is split by "
                          "`split.ratios`; values not listed stay as they are")
    # generative kinds (generation, chat): how a record maps onto the payload (pipeline/sources/records.py)
    record_format: Literal["fields", "alpaca", "sharegpt", "messages"] | None = Field(
        None, description="fields (two mapped fields) | alpaca | sharegpt | messages; default: fields for "
                          "generation, messages for chat (classification reads text_field / label_field)")
    fields: dict[str, str] | None = Field(
        None, description="the record format's field names where the source names them otherwise, nested paths "
                          "allowed: {prompt: document, completion: summary} or {prompt: translation.en, ...}")
    roles: dict[str, str] | None = Field(
        None, description="sharegpt / messages: extra role names → system | user | assistant | tool")

    @field_validator("split_map", mode="before")
    @classmethod
    def _split_codes_as_text(cls, value):
        # split codes are often numbers ({0: train, 1: test} in YAML); the values read are compared as text
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            info = codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252, utf-16)") from None
        if not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13: bytes-to-bytes codecs
            raise ValueError(f"{encoding!r} is not a text encoding (e.g. utf-8, latin-1, cp1252, utf-16)")
        return encoding

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _one_character(cls, value: str | None, info) -> str | None:
        # The csv module reads one character; a longer string is a mistake it would report as a TypeError.
        if value is not None and (len(value) != 1 or value in "\r\n"):
            raise ValueError(f"{info.field_name} must be exactly one character other than a line break, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> "SourceConfig":
        if self.delimiter is not None and self.delimiter == self.quotechar:
            raise ValueError(f"delimiter and quotechar are both {self.delimiter!r}")
        if self.pattern is not None:
            if self.format != "text":
                raise ValueError("pattern applies to format: text only")
            try:
                groups = re.compile(self.pattern).groupindex
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from None
            if self.text_field not in groups:
                raise ValueError(f"pattern has no named group {self.text_field!r} (the text_field)")
        if self.split_map is not None and self.split_field is None:
            raise ValueError("split_map renames the values of split_field: set split_field too")
        bad_splits = sorted({v for v in (self.split_map or {}).values() if v is not None and v not in SPLITS})
        if bad_splits:
            raise ValueError(f"split_map: {', '.join(map(repr, bad_splits))} is not a split (splits: "
                             f"{', '.join(SPLITS)}, or null to split such rows by split.ratios)")
        if self.column_names is not None and self.header:
            raise ValueError("column_names is for files without a header: set header: false")
        if self.fields is not None or self.roles is not None:
            fmt = self.record_format or "fields"
            unknown = [k for k in self.fields or {} if k not in DEFAULT_FIELDS[fmt]]
            if unknown:
                raise ValueError(f"fields: {', '.join(map(repr, unknown))} not read by record_format {fmt} "
                                 f"(it reads {', '.join(DEFAULT_FIELDS[fmt])})")
            bad = {k: v for k, v in (self.roles or {}).items() if v not in ("system", "user", "assistant", "tool")}
            if bad:
                raise ValueError(f"roles: {bad} — a role maps to system, user, assistant or tool")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


def _unique_source_names(sources: list[SourceConfig]) -> list[SourceConfig]:
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"source names must be unique: {', '.join(dupes)}")
    return sources


Sources = Annotated[list[SourceConfig], Field(min_length=1), AfterValidator(_unique_source_names)]
InputsWithin = Annotated[str | None, Field(
    None, description="folder (relative to the config) every source file must resolve inside; `..` or a symlink out is an error")]


class Config(BaseModel):
    """collect has no section of its own: its settings are the config's `sources` and `inputs_within`."""

    model_config = ConfigDict(extra="forbid")
    sources: list[SourceConfig]
    inputs_within: str | None = None
