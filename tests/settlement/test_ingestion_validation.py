"""The hand-written event validator (§5): every shape error gets a reason a person can act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.api.views import _batch_body
from settlement.services.validation import (
    ParsedEvent,
    Rejection,
    WireEvent,
    batch_decode,
    event_parse,
    events_parse,
    same_content,
)

RECEIVED = datetime(2026, 10, 15, 10, 0, tzinfo=UTC)


def parse(raw: object, *, default_account: str | None = None) -> ParsedEvent | Rejection:
    return event_parse(7, raw, default_account=default_account, received_at=RECEIVED)


def good(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "request_id": "r-1",
        "account": "acme",
        "model": "glm-5",
        "input_tokens": 40000,
        "output_tokens": 10000,
        "occurred_at": "2026-10-15T09:59:00Z",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def test_a_good_event_is_parsed_with_missing_classes_as_zero() -> None:
    event = parse(good(tags={"project": "x"}))
    assert isinstance(event, ParsedEvent)
    # cached_input and cache_write were absent: they count as 0.
    assert event.tokens == (40000, 0, 0, 10000)
    assert event.occurred_at == datetime(2026, 10, 15, 9, 59, tzinfo=UTC)
    assert event.tags_json == '{"project":"x"}'


def test_an_accounts_own_key_defaults_the_account() -> None:
    event = parse(good(account=None), default_account="devsolo")
    assert isinstance(event, ParsedEvent) and event.account_code == "devsolo"


@pytest.mark.parametrize(
    ("raw", "code", "reason"),
    [
        ("not an object", "invalid", "an event must be a JSON object"),
        (good(request_id=""), "invalid", "request_id must be a string of 1 to 200 characters"),
        (good(request_id="x" * 201), "invalid", "request_id must be a string of 1 to 200 characters"),
        (good(request_id=12), "invalid", "request_id must be a string of 1 to 200 characters"),
        (good(account=None), "invalid", "account is required with a service key"),
        (good(model=""), "invalid", "model must be a model code"),
        (good(input_tokens=-1), "negative_tokens", "input_tokens must not be negative"),
        (good(output_tokens=1.5), "invalid", "output_tokens must be an integer"),
        (good(output_tokens="10"), "invalid", "output_tokens must be an integer"),
        (good(cached_input_tokens=True), "invalid", "cached_input_tokens must be an integer"),
        (good(occurred_at="2026-10-15T09:59:00"), "invalid", "occurred_at must carry a time zone"),
        (
            good(occurred_at="yesterday"),
            "invalid",
            "occurred_at must be an ISO 8601 timestamp with a time zone",
        ),
        # 10:05:01 is 5 minutes and 1 second after the batch was received at 10:00.
        (
            good(occurred_at="2026-10-15T10:05:01Z"),
            "future_timestamp",
            "occurred_at is more than 5 minutes after the batch was received",
        ),
        (good(tags=["a"]), "invalid", "tags must be an object"),
        (good(input_token=5), "invalid", "unknown field 'input_token'"),
        # What JSON can escape but PostgreSQL cannot store: NUL, and half of a surrogate pair.
        (
            good(request_id="a\x00b"),
            "invalid",
            "request_id must not contain NUL characters or unpaired surrogates",
        ),
        (
            good(request_id="a\ud800"),
            "invalid",
            "request_id must not contain NUL characters or unpaired surrogates",
        ),
        (good(account="ac\x00me"), "invalid", "account must be an account code"),
        (good(model="glm\udfff"), "invalid", "model must be a model code"),
        (good(tags={"p": "x\x00"}), "invalid", "tags must not contain NUL characters or unpaired surrogates"),
        (good(tags={"p\x00": 1}), "invalid", "tags must not contain NUL characters or unpaired surrogates"),
        (
            good(tags={"p": [["\ud800"]]}),
            "invalid",
            "tags must not contain NUL characters or unpaired surrogates",
        ),
    ],
)
def test_each_refusal_names_what_to_fix(raw: object, code: str, reason: str) -> None:
    rejection = parse(raw)
    assert isinstance(rejection, Rejection)
    assert (rejection.index, rejection.code, rejection.reason) == (7, code, reason)


def test_five_minutes_ahead_is_still_accepted() -> None:
    assert isinstance(parse(good(occurred_at="2026-10-15T10:05:00Z")), ParsedEvent)


def test_the_same_call_in_another_zone_is_the_same_content() -> None:
    utc = parse(good(occurred_at="2026-10-15T09:59:00Z"))
    shanghai = parse(good(occurred_at="2026-10-15T17:59:00+08:00"))
    other = parse(good(output_tokens=10001))
    assert (
        isinstance(utc, ParsedEvent) and isinstance(shanghai, ParsedEvent) and isinstance(other, ParsedEvent)
    )
    assert same_content(utc, shanghai)
    assert not same_content(utc, other)


# --- the batch parser's fast path against event_parse, on random events -----------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**15 + 5),
    st.sampled_from([0, 10**15, 10**15 + 1, -1, 2**70]),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.sampled_from(["", "x" * 200, "x" * 201]),
)
_stamps = st.one_of(
    st.sampled_from(
        [
            "2026-10-15T09:59:00Z",
            "2026-10-15T10:04:59.999Z",
            "2026-10-15T10:05:00Z",
            "2026-10-15T10:05:00.001Z",
            "2026-10-15T17:59:00+08:00",
            "2026-10-15T09:59:00",
            "2026-10-15T09:59:00+00:00",
            "2026-10-15",
            "yesterday",
            "",
        ]
    ),
    _values,
)
_tags = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=4), st.booleans()), max_size=3
    ),
    st.just({"big": "x" * 1100}),
    st.just({"wide": "é" * 700}),
    st.just({"n": 2**70}),
    st.just([1, 2]),
    st.text(max_size=3),
)
_FIELDS = [
    *("request_id", "account", "model", "input_tokens", "cached_input_tokens", "cache_write_tokens"),
    *("output_tokens", "occurred_at", "tags", "colour"),
]
_EDGES = [
    *(None, True, 0, -1, 10**15, 10**15 + 1, 2**70, 1.5, float("nan"), "", "x" * 200, "x" * 201),
    *("acme", "glm-5", "2026-10-15T17:59:00+08:00", "2026-10-15T10:05:00.001Z", "2026-10-15T10:05:00Z"),
    *("2026-10-15T10:04:59.999999Z", "2026-10-15T09:59:00", "yesterday", [1], {}, {"a": 1}),
    *({"big": "x" * 1100}, {"wide": "é" * 700}, {"wider": "é" * 2100}, {"n": 2**70}, {"ok": "x" * 1000}),
    *(
        "a\x00",
        "\ud800",
        "é-1",
        {"k": "a\x00"},
        {"k\x00": 1},
        {"k": "\udfff"},
        {"k": "\\u0000"},
        {"项目": "测试"},
    ),
]
_events = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "request_id": st.one_of(st.sampled_from(["r-1", "r-2"]), _values),
            "account": st.one_of(st.sampled_from(["acme", "beta"]), _values),
            "model": st.one_of(st.just("glm-5"), _values),
            "input_tokens": _values,
            "cached_input_tokens": _values,
            "cache_write_tokens": _values,
            "output_tokens": _values,
            "occurred_at": _stamps,
            "tags": _tags,
            "colour": st.just("red"),
        },
    ),
    st.builds(good),
    # A good event with one field set to an edge value, or two, or one dropped: the fast path's edges.
    st.builds(
        lambda field, value: {**good(), field: value}, st.sampled_from(_FIELDS), st.sampled_from(_EDGES)
    ),
    st.builds(
        lambda changes: {**good(), **dict(changes)},
        st.lists(st.tuples(st.sampled_from(_FIELDS), st.sampled_from(_EDGES)), min_size=2, max_size=2),
    ),
    st.builds(lambda field: {k: v for k, v in good().items() if k != field}, st.sampled_from(_FIELDS)),
    _values,
)


@settings(max_examples=1500, deadline=None)
@given(events=st.lists(_events, max_size=8), default_account=st.sampled_from([None, "acme"]))
def test_the_batch_parser_agrees_with_event_parse_on_every_event(
    events: list[object], default_account: str | None
) -> None:
    parsed, rejections = events_parse(events, default_account=default_account, received_at=RECEIVED)
    one_by_one = [
        event_parse(i, raw, default_account=default_account, received_at=RECEIVED)
        for i, raw in enumerate(events)
    ]
    assert parsed == [o for o in one_by_one if isinstance(o, ParsedEvent)]
    assert rejections == [o for o in one_by_one if isinstance(o, Rejection)]


def _body(events: list[object], ascii_only: bool) -> bytes | None:
    """The batch as a gateway would send it: \\u escapes for everything non-ASCII, or UTF-8 as it
    is (None when the events cannot be written that way: an unpaired surrogate)."""
    text = json.dumps({"events": events}, ensure_ascii=ascii_only)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


# Events one change away from a good one: most batches of these are all well-formed, so the decoder
# (which takes a batch only whole) is the one judging them.
_near_good = st.one_of(
    st.builds(good),
    st.builds(good, request_id=st.text(st.characters(max_codepoint=127), min_size=1, max_size=201)),
    st.builds(
        lambda field, value: {**good(), field: value}, st.sampled_from(_FIELDS), st.sampled_from(_EDGES)
    ),
    st.builds(lambda field: {k: v for k, v in good().items() if k != field}, st.sampled_from(_FIELDS)),
    st.builds(lambda stamp, tags: good(occurred_at=stamp, tags=tags), _stamps, _tags),
)


@settings(max_examples=1500, deadline=None)
@given(
    events=st.one_of(
        st.lists(_events, max_size=8),
        st.lists(_near_good, min_size=1, max_size=3),
        st.lists(_near_good, min_size=1, max_size=1),
    ),
    default_account=st.sampled_from([None, "acme"]),
    ascii_only=st.booleans(),
)
def test_the_decoded_batch_agrees_with_event_parse_on_the_parsed_body(
    events: list[object], default_account: str | None, ascii_only: bool
) -> None:
    body = _body(events, ascii_only)
    if body is None:
        return
    decoded = batch_decode(body)
    reference: list[Any] = _batch_body(body)["events"]
    judged = events_parse(
        decoded if decoded is not None else reference, default_account=default_account, received_at=RECEIVED
    )
    one_by_one = [
        event_parse(i, raw, default_account=default_account, received_at=RECEIVED)
        for i, raw in enumerate(reference)
    ]
    assert judged == (
        [o for o in one_by_one if isinstance(o, ParsedEvent)],
        [o for o in one_by_one if isinstance(o, Rejection)],
    )


def test_a_gateways_batch_is_decoded_and_anything_unusual_is_left_to_the_json_parser() -> None:
    usual = json.dumps({"events": [good(), good(request_id="r-2", tags={"project": "x"})]}).encode()
    decoded = batch_decode(usual)
    assert decoded is not None and all(type(e) is WireEvent for e in decoded)
    parsed, rejections = events_parse(decoded, default_account=None, received_at=RECEIVED)
    assert rejections == [] and [e.tags_json for e in parsed] == [None, '{"project":"x"}']
    for unusual in (
        {"events": [good(input_tokens=-1)]},  # refused by the decoder: event_parse names the reason
        {"events": [good(colour="red")]},
        {"events": [good(account=None) | {"account": None}]},
        {"events": [good(tags={"k": "\x00"})]},  # a \\u escape in the body
        {"events": [good(tags={"项目": "测试"})]},
        {"events": "none"},
        [good()],
    ):
        assert batch_decode(json.dumps(unusual, ensure_ascii=False).encode()) is None
    # Tags nested deeper than any decoder goes: left to the JSON parser, which refuses the body.
    deep = json.dumps({"events": [good(tags={"a": 1})]}).replace(
        '{"a": 1}', '{"a":' * 5000 + "1" + "}" * 5000
    )
    assert batch_decode(deep.encode()) is None
