"""The bytes of a source file as collect reads them: decompressed when they are compressed, and hashed as
they are read.

*Compressed inputs* are recognized by their first bytes, whatever the file is called: gzip, bzip2 and xz
through the standard library, zstd through pyarrow (already a dependency). A ZIP archive holds files, not
a stream: it is refused with what to do.

*Hashing as read.* The stage cache is keyed by the sha256 of each input taken before collect reads it. A
file that changes in between (appended to while it is read, then restored) would otherwise leave behind a
cached output that does not match its key. `HashingReader` hashes every byte as it comes off the disk, so
the reader can say exactly which content it parsed; collect compares that with the digest the cache key
was made from and fails, keeping nothing, when they differ.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from pipeline.errors import UserError

# First bytes → the compression they announce. bzip2's signature starts with printable ASCII ("BZh"), so
# the whole of it is required — the block size digit, then the first block's (or, for an empty stream, the
# end-of-stream) magic — lest a text file that begins "BZh" be read as bzip2; gzip's names its method.
_MAGIC = (
    (re.compile(rb"\x1f\x8b\x08"), "gzip"),
    (re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)"), "bzip2"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd"),
    (re.compile(rb"PK\x03\x04"), "zip"),
)
HEAD_BYTES = 10  # enough for the longest signature


def compression_of(head: bytes) -> str | None:
    """The compression a file's first bytes announce, or None for plain bytes."""
    for magic, name in _MAGIC:
        if magic.match(head):
            return name
    return None


def decompressing(stream: BinaryIO, codec: str | None, file: Path | str) -> BinaryIO:
    if codec is None:
        return stream
    if codec == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if codec == "bzip2":
        return bz2.BZ2File(stream, mode="rb")  # type: ignore[return-value]
    if codec == "xz":
        return lzma.LZMAFile(stream, mode="rb")  # type: ignore[return-value]
    if codec == "zstd":
        import pyarrow as pa

        return pa.CompressedInputStream(pa.PythonFile(stream, mode="r"), "zstd")  # type: ignore[return-value]
    raise UserError(f"{file} is a {codec.upper()} archive: extract the files in it and name those as the source's path")


class HashingReader(io.RawIOBase):
    """A raw binary stream that hashes (sha256) and counts every byte read through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.raw.read(len(view))
        n = len(data)
        view[:n] = data
        if n:
            self.sha256.update(data)
            self.bytes += n
        return n

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            super().close()


class SourceBytes:
    """An open source file: `stream` is its content (decompressed); `digest()`, once parsing is done, reads
    whatever the parser left unread and returns the sha256 of the file's bytes on disk as read."""

    def __init__(self, hashing: HashingReader, buffered: io.BufferedReader, stream: BinaryIO, codec: str | None):
        self._hashing, self._buffered, self.stream, self.codec = hashing, buffered, stream, codec
        self._text: io.TextIOWrapper | None = None

    def text(self, encoding: str, errors: str, newline: str | None) -> io.TextIOWrapper:
        # Held here: a wrapper collected while the file is open would close the stream under `digest`.
        self._text = io.TextIOWrapper(self.stream, encoding=encoding, errors=errors, newline=newline)  # type: ignore[arg-type]
        return self._text

    def digest(self) -> str:
        while self._buffered.read(1 << 20):
            pass
        return self._hashing.sha256.hexdigest()


@contextmanager
def open_source_bytes(file: Path | str, opener) -> Iterator[SourceBytes]:
    """`file`'s content, decompressed if its first bytes say it is compressed, hashed as it is read.
    `opener(file, "rb")` opens it (a local path or an fsspec URL)."""
    hashing = HashingReader(opener(file, "rb"))
    buffered = io.BufferedReader(hashing, 1 << 16)
    try:
        codec = compression_of(buffered.peek(HEAD_BYTES)[:HEAD_BYTES])
        yield SourceBytes(hashing, buffered, decompressing(buffered, codec, file), codec)
    finally:
        buffered.close()
