"""The usage event validator (§5): plain Python, one pass per event.

Why not a DRF serializer per event: ingestion is the hot path, and a serializer instance per event
costs about two thirds of the throughput (performance-notes.md). The checks here are the ones a
serializer would make, written out, with rejection reasons a person at the gateway can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import orjson

from settlement.models import TOKEN_CLASSES

# The field names of §5, in the order of TOKEN_CLASSES.
TOKEN_FIELDS: tuple[str, ...] = tuple(f"{token_class}_tokens" for token_class in TOKEN_CLASSES)
# event_parse reads the four counts by name in this order.
assert TOKEN_FIELDS == ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens")
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
    cascade_key: tuple[int, str, datetime] | None = field(default=None)


_TokenCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]


class WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An event as `batch_decode` reads it: the fields of §5 with the checks the decoder can make
    itself (types, lengths, token bounds, no unknown field). A missing account is UNSET, not None:
    an explicit null is refused, as event_parse refuses it."""

    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    model: Annotated[str, msgspec.Meta(min_length=1)]
    occurred_at: str
    account: Annotated[str, msgspec.Meta(min_length=1)] | msgspec.UnsetType = msgspec.UNSET
    input_tokens: _TokenCount = 0
    cached_input_tokens: _TokenCount = 0
    cache_write_tokens: _TokenCount = 0
    output_tokens: _TokenCount = 0
    tags: dict[str, Any] | None = None

    def as_json_object(self) -> dict[str, Any]:
        """The event as the JSON object it was decoded from (for event_parse's verdict)."""
        fields = {name: getattr(self, name) for name in self.__struct_fields__}
        return {name: value for name, value in fields.items() if value is not msgspec.UNSET}


class _WireBatch(msgspec.Struct, gc=False):
    events: list[WireEvent]


_wire_batch: msgspec.json.Decoder[_WireBatch] = msgspec.json.Decoder(_WireBatch)


def batch_decode(raw: bytes) -> list[Any] | None:
    """The events of a batch body, as WireEvents, when the decoder finds every one well-formed;
    else None, and the caller parses the body as JSON for events_parse to judge each event with its
    reason. Decoding straight into WireEvents costs a fraction of a JSON parse and a check of every
    field in Python (docs/benchmarks.md). Only a body of ASCII without \\u escapes is taken: its
    strings hold no NUL, no unpaired surrogate and nothing non-ASCII, so every string is storable as
    it is (what events_parse checks on the others)."""
    # (A lone backslash is found by memchr; a two-byte search costs 2.5 ms on a 2 MB body.)
    if not raw.isascii() or (b"\\" in raw and b"\\u" in raw):
        return None
    try:
        events: list[Any] = _wire_batch.decode(raw).events
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        # (RecursionError: tags nested deeper than the decoder goes; the JSON parse refuses them.)
        return None
    return events


def events_parse(
    events: list[Any], *, default_account: str | None, received_at: datetime
) -> tuple[list[ParsedEvent], list[Rejection]]:
    """event_parse over a batch. The common event (known fields, a UTC stamp, small tags) is
    accepted by one inlined test of all its fields; anything else (an error, a stamp with another
    offset, large tags) goes through event_parse, which accepts or refuses it with its reason. The
    fast test accepts nothing event_parse would refuse and builds the same ParsedEvent
    (tests/settlement/test_ingestion_validation.py holds them equal on random events)."""
    parsed: list[ParsedEvent] = []
    rejections: list[Rejection] = []
    latest = received_at + FUTURE_TOLERANCE
    known = KNOWN_FIELDS.issuperset
    fromisoformat = datetime.fromisoformat
    small_tags = MAX_TAGS_BYTES // 4
    append = parsed.append
    unset = msgspec.UNSET
    occurred_at: datetime | None
    account: Any
    tags: Any
    well_formed: Any  # the last test's value, as `and` gives it
    for index, raw in enumerate(events):
        kind = type(raw)
        # Each shape's own test; the stamp and the tags are tested once, below, for both.
        if kind is WireEvent:
            # Decoded by batch_decode: types, lengths, bounds and storability already hold.
            request_id, model, stamp, tags = raw.request_id, raw.model, raw.occurred_at, raw.tags
            account = default_account if raw.account is unset else raw.account
            tokens = (raw.input_tokens, raw.cached_input_tokens, raw.cache_write_tokens, raw.output_tokens)
            well_formed = account is not None
        elif kind is dict and known(raw):
            get = raw.get
            request_id = get("request_id")
            account = get("account", default_account)
            model = get("model")
            t0 = get("input_tokens", 0)
            t1 = get("cached_input_tokens", 0)
            t2 = get("cache_write_tokens", 0)
            t3 = get("output_tokens", 0)
            stamp = get("occurred_at")
            tags = get("tags")
            tokens = (t0, t1, t2, t3)
            well_formed = (
                type(request_id) is str
                and 0 < len(request_id) <= 200
                and type(account) is str
                and account
                and type(model) is str
                and model
                # ASCII without NUL: storable as it is (anything else is judged by event_parse).
                and request_id.isascii()
                and "\x00" not in request_id
                and account.isascii()
                and "\x00" not in account
                and model.isascii()
                and "\x00" not in model
                and type(t0) is int
                and type(t1) is int
                and type(t2) is int
                and type(t3) is int
                and 0 <= t0 <= MAX_TOKENS
                and 0 <= t1 <= MAX_TOKENS
                and 0 <= t2 <= MAX_TOKENS
                and 0 <= t3 <= MAX_TOKENS
                and type(stamp) is str
            )
        else:
            well_formed = False
        if well_formed:
            try:
                occurred_at = fromisoformat(stamp)
            except ValueError:
                occurred_at = None
            if occurred_at is not None and occurred_at.tzinfo is UTC and occurred_at <= latest:
                if tags is None:
                    append(ParsedEvent(index, request_id, account, model, tokens, occurred_at, None))
                    continue
                if type(tags) is dict:
                    text = tags_text(tags)
                    if text is not None and len(text) <= small_tags and _tags_storable(tags, text):
                        append(ParsedEvent(index, request_id, account, model, tokens, occurred_at, text))
                        continue
        if kind is WireEvent:
            raw = raw.as_json_object()
        outcome = event_parse(index, raw, default_account=default_account, received_at=received_at)
        if isinstance(outcome, Rejection):
            rejections.append(outcome)
        else:
            append(outcome)
    return parsed, rejections


def event_parse(
    index: int, raw: object, *, default_account: str | None, received_at: datetime
) -> ParsedEvent | Rejection:
    """Check one event's shape and values; never raises on client input.

    Written for the common case: a well-formed event takes one pass of cheap type checks
    (`type(x) is int` also refuses bool, an int subclass), and every message is built only on
    failure. This function runs 10,000 times per batch (docs/benchmarks.md)."""
    if type(raw) is not dict:
        return Rejection(index, None, "invalid", "an event must be a JSON object")
    get = raw.get
    request_id = get("request_id")
    if type(request_id) is not str or not 1 <= len(request_id) <= 200:
        return Rejection(index, None, "invalid", "request_id must be a string of 1 to 200 characters")
    if not _storable(request_id):
        return Rejection(
            index, None, "invalid", "request_id must not contain NUL characters or unpaired surrogates"
        )

    if not KNOWN_FIELDS.issuperset(raw):
        return Rejection(
            index, request_id, "invalid", f"unknown field {sorted(set(raw) - KNOWN_FIELDS)[0]!r}"
        )

    account = get("account", default_account)
    if type(account) is not str or not account or not _storable(account):
        if account is None:
            return Rejection(index, request_id, "invalid", "account is required with a service key")
        return Rejection(index, request_id, "invalid", "account must be an account code")

    model = get("model")
    if type(model) is not str or not model or not _storable(model):
        return Rejection(index, request_id, "invalid", "model must be a model code")

    tokens = (
        get("input_tokens", 0),
        get("cached_input_tokens", 0),
        get("cache_write_tokens", 0),
        get("output_tokens", 0),
    )
    for name, value in zip(TOKEN_FIELDS, tokens, strict=True):
        # bool is an int subclass in Python; true/false tokens are a client bug, so refuse them.
        if type(value) is not int:
            return Rejection(index, request_id, "invalid", f"{name} must be an integer")
        if not 0 <= value <= MAX_TOKENS:
            if value < 0:
                return Rejection(index, request_id, "negative_tokens", f"{name} must not be negative")
            return Rejection(index, request_id, "invalid", f"{name} is larger than {MAX_TOKENS}")

    stamp = get("occurred_at")
    if type(stamp) is not str:
        return Rejection(index, request_id, "invalid", _STAMP_REASON)
    try:
        occurred_at = datetime.fromisoformat(stamp)
    except ValueError:
        return Rejection(index, request_id, "invalid", _STAMP_REASON)
    zone = occurred_at.tzinfo
    if zone is not UTC:
        if zone is None or occurred_at.utcoffset() is None:
            return Rejection(index, request_id, "invalid", "occurred_at must carry a time zone")
        occurred_at = occurred_at.astimezone(UTC)
    if occurred_at > received_at + FUTURE_TOLERANCE:
        return Rejection(
            index,
            request_id,
            "future_timestamp",
            "occurred_at is more than 5 minutes after the batch was received",
        )

    tags_json: str | None = None
    tags = get("tags")
    if tags is not None:
        if type(tags) is not dict:
            return Rejection(index, request_id, "invalid", "tags must be an object")
        tags_json = tags_text(tags)
        if tags_json is None:
            return Rejection(index, request_id, "invalid", "tags must hold JSON values (not NaN or Infinity)")
        if not _tags_storable(tags, tags_json):
            return Rejection(
                index, request_id, "invalid", "tags must not contain NUL characters or unpaired surrogates"
            )
        if len(tags_json) > MAX_TAGS_BYTES // 4 and len(tags_json.encode()) > MAX_TAGS_BYTES:
            return Rejection(index, request_id, "invalid", f"tags must be at most {MAX_TAGS_BYTES} bytes")

    return ParsedEvent(index, request_id, account, model, tokens, occurred_at, tags_json)


_STAMP_REASON = "occurred_at must be an ISO 8601 timestamp with a time zone"


def _storable(text: str) -> bool:
    """Whether PostgreSQL can store this text. JSON can carry a NUL character or half of a surrogate
    pair as an escape, and neither survives the trip: text columns refuse NUL, and UTF-8 has no
    surrogates. (In tags' JSON text a NUL is the escape itself: see _tags_storable.)"""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _tags_storable(tags: dict[str, Any], text: str) -> bool:
    """Whether jsonb can store these tags, written as `text`: a NUL shows in the text as its escape
    (looked for in the tags themselves only then, since a string may also hold a backslash and
    "u0000"), an unpaired surrogate as itself."""
    if "\\u0000" in text and _holds_nul(tags):
        return False
    return text.isascii() or _storable(text)


def _holds_nul(value: Any) -> bool:
    """Whether a NUL character is in any string of these tags, keys included (jsonb refuses it).
    A loop, not recursion: tags may nest deeper than Python's recursion limit."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is str:
            if "\x00" in item:
                return True
        elif type(item) is dict:
            pending.extend(item)
            pending.extend(item.values())
        elif type(item) is list:
            pending.extend(item)
    return False


# One encoder for every event's tags (json.dumps builds a new one per call with these options).
_tags_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


class NonFinite:
    """NaN, Infinity or -Infinity in a body: JSON has no such values, but the standard library parses
    them. The batch view's fallback parser puts this in their place, so that a token count holding
    one is "not an integer" and tags holding one are refused, never stored or sent to the database."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def tags_text(tags: dict[str, Any]) -> str | None:
    """The tags as JSON text with sorted keys (what the event table stores and replays compare), or
    None if they hold a value JSON cannot carry. orjson writes the same text several times faster;
    the standard library takes over for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        pass
    try:
        return _tags_dumps(tags)
    except (TypeError, ValueError):
        return None


def same_content(a: ParsedEvent, b: ParsedEvent) -> bool:
    """What makes a replay a duplicate rather than a conflict: everything but the key itself. The
    timestamps are instants, so 10:00Z and 18:00+08:00 are the same call; tags compare as JSON
    objects (their text is written with sorted keys). The database makes the same comparison
    against an event landed by an earlier batch (ingestion._land)."""
    return (
        a.model_code == b.model_code
        and a.tokens == b.tokens
        and a.occurred_at == b.occurred_at
        and a.tags_json == b.tags_json
    )
