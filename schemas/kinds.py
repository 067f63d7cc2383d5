"""The registry of record kinds. Adding a kind: its own module in `schemas/` and one line below."""
from __future__ import annotations

from schemas.chat import CHAT
from schemas.classification import CLASSIFICATION
from schemas.generation import GENERATION
from schemas.record import RecordKind

KINDS: dict[str, RecordKind] = {
    kind.name: kind
    for kind in (
        CLASSIFICATION,
        GENERATION,
        CHAT,
    )
}
DEFAULT_KIND = CLASSIFICATION.name


def record_kind(name: str) -> RecordKind:
    """The registered kind called `name` (KeyError naming the known kinds otherwise)."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown record kind {name!r} (kinds: {', '.join(KINDS)})") from None
