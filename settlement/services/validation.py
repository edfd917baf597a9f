"""The usage event validator (§5): plain Python, one pass per event.

Why not a DRF serializer per event: ingestion is the hot path, and a serializer instance per event
costs about two thirds of the throughput (performance-notes.md). The checks here are the ones a
serializer would make, written out, with rejection reasons a person at the gateway can act on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from settlement.models import TOKEN_CLASSES

# The field names of §5, in the order of TOKEN_CLASSES.
TOKEN_FIELDS: tuple[str, ...] = tuple(f"{token_class}_tokens" for token_class in TOKEN_CLASSES)
KNOWN_FIELDS = frozenset({"request_id", "account", "model", "occurred_at", "tags", *TOKEN_FIELDS})
# A clock skew allowance: the gateway may stamp a call slightly ahead of our clock, never more.
FUTURE_TOLERANCE = timedelta(minutes=5)
# A single call of more than a trillion tokens of one class is a unit mistake, not usage.
MAX_TOKENS = 10**15
MAX_TAGS_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one event of a batch was not taken; `code` is stable, `reason` is for people."""

    index: int
    request_id: str | None
    code: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "request_id": self.request_id, "code": self.code, "reason": self.reason}


@dataclass(slots=True)
class ParsedEvent:
    """An event whose fields are well-formed; account and model are still codes to resolve."""

    index: int
    request_id: str
    account_code: str
    model_code: str
    tokens: tuple[int, int, int, int]
    occurred_at: datetime
    tags_json: str | None
    # Filled by resolution (ingestion.py) once the account and model are known.
    account_id: int = 0
    model_id: int = 0
    content_hash: str = ""
    cascade_key: tuple[int, str, datetime] | None = field(default=None)


def event_parse(
    index: int, raw: object, *, default_account: str | None, received_at: datetime
) -> ParsedEvent | Rejection:
    """Check one event's shape and values; never raises on client input."""
    if not isinstance(raw, dict):
        return Rejection(index, None, "invalid", "an event must be a JSON object")
    request_id = raw.get("request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 200:
        return Rejection(index, None, "invalid", "request_id must be a string of 1 to 200 characters")

    def refuse(code: str, reason: str) -> Rejection:
        return Rejection(index, request_id, code, reason)

    if not KNOWN_FIELDS.issuperset(raw):
        return refuse("invalid", f"unknown field {sorted(set(raw) - KNOWN_FIELDS)[0]!r}")

    account = raw.get("account", default_account)
    if account is None:
        return refuse("invalid", "account is required with a service key")
    if not isinstance(account, str) or not account:
        return refuse("invalid", "account must be an account code")

    model = raw.get("model")
    if not isinstance(model, str) or not model:
        return refuse("invalid", "model must be a model code")

    counts: list[int] = []
    for name in TOKEN_FIELDS:
        value = raw.get(name, 0)
        # bool is an int subclass in Python; true/false tokens are a client bug, so refuse them.
        if isinstance(value, bool) or not isinstance(value, int):
            return refuse("invalid", f"{name} must be an integer")
        if value < 0:
            return refuse("negative_tokens", f"{name} must not be negative")
        if value > MAX_TOKENS:
            return refuse("invalid", f"{name} is larger than {MAX_TOKENS}")
        counts.append(value)

    stamp = raw.get("occurred_at")
    if not isinstance(stamp, str):
        return refuse("invalid", "occurred_at must be an ISO 8601 timestamp with a time zone")
    try:
        occurred_at = datetime.fromisoformat(stamp)
    except ValueError:
        return refuse("invalid", "occurred_at must be an ISO 8601 timestamp with a time zone")
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        return refuse("invalid", "occurred_at must carry a time zone")
    occurred_at = occurred_at.astimezone(UTC)
    if occurred_at > received_at + FUTURE_TOLERANCE:
        return refuse("future_timestamp", "occurred_at is more than 5 minutes after the batch was received")

    tags_json: str | None = None
    if "tags" in raw and raw["tags"] is not None:
        tags = raw["tags"]
        if not isinstance(tags, dict):
            return refuse("invalid", "tags must be an object")
        tags_json = json.dumps(tags, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if len(tags_json.encode()) > MAX_TAGS_BYTES:
            return refuse("invalid", f"tags must be at most {MAX_TAGS_BYTES} bytes")

    return ParsedEvent(
        index=index,
        request_id=request_id,
        account_code=account,
        model_code=model,
        tokens=(counts[0], counts[1], counts[2], counts[3]),
        occurred_at=occurred_at,
        tags_json=tags_json,
    )


def content_hash(event: ParsedEvent) -> str:
    """What makes a replay a duplicate rather than a conflict: everything but the key itself.
    The timestamp is compared in UTC, so 10:00Z and 18:00+08:00 are the same call."""
    text = "|".join(
        (event.model_code, *map(str, event.tokens), event.occurred_at.isoformat(), event.tags_json or "")
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
