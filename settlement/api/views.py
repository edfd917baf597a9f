"""The gateway's two calls (§5, §6): post a usage batch, ask whether an account may spend.

The batch view is a plain APIView that decodes the raw body itself (msgspec): a DRF serializer per
event would cost two thirds of the throughput (performance-notes.md); the events are validated by
the hand-written validator in settlement/services/validation.py. The serializers below document
the API in the OpenAPI schema; they are not used to validate events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import api_key_cache_key_of, api_key_entry_usable
from distributor.errors import NotFound, PermissionRefused, ValidationFailed
from distributor.money import normalize
from settlement.services.credit_control import (
    authorization_decide,
    authorization_for,
    credit_cache_keys,
    credit_states_cached,
)
from settlement.services.ingestion import MAX_BATCH_EVENTS, usage_ingest
from settlement.services.validation import NonFinite, batch_decode

USAGE_SCOPE = "usage"


class UsageEventDoc(serializers.Serializer):
    request_id = serializers.CharField(max_length=200, help_text="Unique per account: the idempotency key")
    account = serializers.CharField(required=False, help_text="Account code; defaults to the key's account")
    model = serializers.CharField()
    input_tokens = serializers.IntegerField(min_value=0, required=False, default=0)
    cached_input_tokens = serializers.IntegerField(min_value=0, required=False, default=0)
    cache_write_tokens = serializers.IntegerField(min_value=0, required=False, default=0)
    output_tokens = serializers.IntegerField(min_value=0, required=False, default=0)
    occurred_at = serializers.DateTimeField(help_text="ISO 8601 with a time zone")
    tags = serializers.DictField(required=False)


class UsageBatchDoc(serializers.Serializer):
    events = UsageEventDoc(many=True, help_text=f"Up to {MAX_BATCH_EVENTS} events")


class RejectionDoc(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the event in the batch")
    request_id = serializers.CharField(allow_null=True)
    code = serializers.ChoiceField(
        choices=[
            "invalid",
            "negative_tokens",
            "future_timestamp",
            "unknown_account",
            "out_of_scope",
            "unknown_model",
            "no_price",
            "conflict",
        ]
    )
    reason = serializers.CharField()


class IngestResultDoc(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejections = RejectionDoc(many=True)


class MoneyDoc(serializers.Serializer):
    amount = serializers.CharField()
    currency = serializers.CharField()


class AuthorizationDoc(serializers.Serializer):
    account = serializers.CharField()
    allowed = serializers.BooleanField()
    reason = serializers.CharField(help_text="ok, on_hold, suspended, closed, no_credit or ancestor:<code>")
    available = MoneyDoc()


def caller_of(request: Request) -> tuple[Any | None, bool]:
    """(the key's account, is it the root's service key) for the authenticated API key."""
    key = request.auth
    account = getattr(key, "account", None)
    service = bool(getattr(key, "is_service", account is None))
    return account, service


class UsageBatchView(APIView):
    @extend_schema(
        operation_id="usage_batch_post",
        summary="Post a batch of usage events",
        description=(
            "Each event is accepted, counted as a duplicate (same request_id and content), or rejected "
            "with its index and a reason. Rejections never block the batch's valid events; a retried "
            "batch changes nothing. Needs an API key with scope `usage`: the root's service key (any "
            "account, `account` required) or an account's own key (its subtree, `account` defaults to it)."
        ),
        request=UsageBatchDoc,
        responses={200: IngestResultDoc},
        examples=[
            OpenApiExample(
                "one call",
                request_only=True,
                value={
                    "events": [
                        {
                            "request_id": "req-1",
                            "account": "acme",
                            "model": "glm-5",
                            "input_tokens": 40000,
                            "output_tokens": 10000,
                            "occurred_at": "2026-10-15T10:00:00Z",
                        }
                    ]
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        key = request.auth
        if USAGE_SCOPE not in (getattr(key, "scopes", None) or []):
            raise PermissionRefused("this API key lacks the 'usage' scope")
        events = _batch_events(request.body)
        if len(events) > MAX_BATCH_EVENTS:
            raise ValidationFailed(
                f"a batch holds at most {MAX_BATCH_EVENTS} events, got {len(events)}",
                details={"max_events": MAX_BATCH_EVENTS, "events": len(events)},
            )
        account, service = caller_of(request)
        result = usage_ingest(
            events=events, caller_account=account, service=service, received_at=timezone.now()
        )
        return Response(result.as_dict())


def _batch_events(raw: bytes) -> list[Any]:
    """The batch's events: decoded straight into WireEvents when the decoder finds every event
    well-formed (the gateway's usual batch), else parsed as JSON for events_parse to judge one by
    one. A body that is not {"events": [...]} is refused."""
    decoded = batch_decode(raw)
    if decoded is not None:
        return decoded
    body = _batch_body(raw)
    if not isinstance(body, dict):
        raise ValidationFailed('the body must be a JSON object like {"events": [...]}')
    events = body.get("events")
    if not isinstance(events, list):
        raise ValidationFailed("events must be a list")
    return events


def _batch_body(raw: bytes) -> Any:
    """The parsed body of a usage batch that batch_decode did not take. msgspec parses JSON as fast as
    orjson and keeps integers past 64 bits exact (orjson turns them into floats). What it refuses
    (NaN, an unpaired surrogate, a number beyond a double, deep nesting) is parsed again by the
    standard library, so that the events are judged one by one instead of the whole batch failing.
    NaN and Infinity are kept as NonFinite, which the validator refuses wherever it appears."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        pass
    try:
        return json.loads(raw, parse_constant=NonFinite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("the body is not valid JSON", details={"error": str(exc)}) from exc
    except RecursionError as exc:
        # Valid JSON, but nested deeper than any event (or its 4 KB of tags) can be.
        raise ValidationFailed("the body nests too deeply") from exc


@dataclass(frozen=True, slots=True)
class _AccountRef:
    """What an authorization needs of the account: its id, code and ancestors (root-most first)."""

    pk: int
    code: str
    ancestor_ids: tuple[int, ...]

    def seen_by(self, caller_id: int | None) -> bool:
        """Whether a key of account `caller_id` may ask about this account: its own, or one in its
        subtree (None is the root's service key, which sees every account)."""
        return caller_id is None or caller_id == self.pk or caller_id in self.ancestor_ids


# An account's code, id and parent never change (accounts.services.account_update), so what an
# authorization needs of it is kept in the worker's memory once read: the gateway's steady state
# makes no database query at all. Unknown codes are not remembered (the account may be opened).
_ACCOUNT_REFS: dict[str, _AccountRef] = {}
_ACCOUNT_REFS_MAX = 200_000


def account_refs_forget() -> None:
    """Drop the remembered accounts (tests: their database is rolled back between cases, so a code
    may come back with another id; in production accounts are never deleted or renamed)."""
    _ACCOUNT_REFS.clear()


def _account_for_authorization(code: str) -> _AccountRef | None:
    """The gateway asks before every call: one indexed read by code the first time, without a
    model instance or an ORM query compiled per request (that was a third of the request's time when
    measured, docs/benchmarks.md). Status and credit come from the credit cache, not from here."""
    found = _ACCOUNT_REFS.get(code)
    if found is not None:
        return found
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, code, ancestor_ids FROM accounts_account WHERE code = %s", [code])
        row = cursor.fetchone()
    if row is None:
        return None
    found = _AccountRef(pk=row[0], code=row[1], ancestor_ids=tuple(row[2] or ()))
    if len(_ACCOUNT_REFS) >= _ACCOUNT_REFS_MAX:
        _ACCOUNT_REFS.clear()
    _ACCOUNT_REFS[code] = found
    return found


def _authorization_answer(account: _AccountRef, answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "account": account.code,
        "allowed": answer["allowed"],
        "reason": answer["reason"],
        "available": {"amount": normalize(answer["available"]), "currency": answer["currency"]},
    }


def authorization_from_cache(request: HttpRequest, code: str) -> HttpResponse | None:
    """The gateway's steady state in one cache round trip and no database query: the key's entry
    and the credit entries of the account and its ancestors, read together. None whenever anything
    is not plainly fine (no or odd Authorization header, an account or entry not cached, a key not
    usable, an account outside the key's subtree): the DRF view then answers, with its errors.

    Why: this is the call the gateway makes before every API call, and DRF's request handling
    (authentication as a separate cache read, content negotiation, rendering) was over half of its
    time (docs/benchmarks.md). settlement.api.middleware calls it before most of Django's request
    handling too."""
    scheme, _, secret = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not secret or not secret.isascii() or " " in secret:
        return None
    account = _ACCOUNT_REFS.get(code)
    if account is None:
        return None
    chain = [*account.ancestor_ids, account.pk]
    key_entry_key = api_key_cache_key_of(secret=secret)
    found = cache.get_many([key_entry_key, *credit_cache_keys(account_ids=chain)])
    entry = found.get(key_entry_key)
    if entry is None or not api_key_entry_usable(entry, now=timezone.now()):
        return None
    if not account.seen_by(entry[1]):  # entry[1]: the key's account
        return None
    states = credit_states_cached(account_ids=chain, found=found)
    if len(states) < len(chain):
        return None
    body = _authorization_answer(account, authorization_decide(chain=chain, states=states))
    return HttpResponse(orjson.dumps(body), content_type="application/json")


class AuthorizationView(APIView):
    """What settlement.api.middleware cannot answer from the cache alone."""

    @extend_schema(
        operation_id="account_authorization",
        summary="May this account spend now?",
        description=(
            "Answered from the credit cache kept current as usage lands. Denied when the account or any "
            "ancestor is not active or has no available credit. 404 outside the caller's subtree."
        ),
        responses={200: AuthorizationDoc},
    )
    def get(self, request: Request, code: str) -> Response:
        # The key's account id is enough here (the view requires a key): loading the account itself
        # was a query per request.
        caller_id: int | None = getattr(request.auth, "account_id", None)
        account = _account_for_authorization(code)
        if account is None or not account.seen_by(caller_id):
            raise NotFound(f"no account {code!r}", details={"account": code})
        return Response(_authorization_answer(account, authorization_for(account=account)))
