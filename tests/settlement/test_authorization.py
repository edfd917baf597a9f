"""Credit control (§6, §11.8) and the gateway's HTTP calls: authorize from the cache, ancestors'
holds stop the subtree, and the batch endpoint's 400s."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from settlement.models import UsageBatch, UsageEvent
from settlement.services import authorization_for, credit_states_refresh, usage_ingest
from tests.settlement.test_ingestion import (
    RECEIVED,
    UsageEventFactory,
    World,
    acme_big_call,
    devsolo_calls,
    world_build,
)


@pytest.fixture
def world(db: None) -> World:
    return world_build()


def set_status(account: Any, status: str) -> None:
    """What the accounts side does on a status change: save it, then refresh the cache entry."""
    type(account).objects.filter(pk=account.pk).update(status=status)
    account.refresh_from_db()
    credit_states_refresh(account_ids=[account.pk])


def test_postpaid_available_is_limit_less_unbilled(world: World) -> None:
    assert authorization_for(account=world.acme) == {
        "allowed": True,
        "reason": "ok",
        "available": Decimal("10000.00"),
        "currency": "USD",
    }
    usage_ingest(events=[acme_big_call()], service=True, received_at=RECEIVED)
    # Ingestion refreshed the cache: acme 10000 - 1150 = 8850; beta 20000 - 1104 = 18896;
    # alpha 50000 - 1058 = 48942.
    assert authorization_for(account=world.acme)["available"] == Decimal("8850")
    assert authorization_for(account=world.beta)["available"] == Decimal("18896")
    assert authorization_for(account=world.alpha)["available"] == Decimal("48942")


def test_prepaid_available_is_the_wallet(world: World) -> None:
    assert authorization_for(account=world.devsolo)["available"] == Decimal("100")
    result = usage_ingest(
        events=devsolo_calls(100), service=True, received_at=datetime(2026, 10, 30, tzinfo=UTC)
    )
    assert result.accepted == 100
    # 100 calls: 4,000,000 x 0.3165 / 1M + 1,000,000 x 2.69025 / 1M = 1.266 + 2.69025 = 3.95625.
    assert authorization_for(account=world.devsolo)["available"] == Decimal("96.04375")


def test_an_ancestors_hold_stops_the_whole_subtree(world: World) -> None:
    # Prime the cache for the whole chain, then hold alpha: one refresh of alpha's entry suffices.
    assert authorization_for(account=world.acme)["reason"] == "ok"
    set_status(world.alpha, "on_hold")
    assert authorization_for(account=world.acme) == {
        "allowed": False,
        "reason": "ancestor:alpha",
        "available": Decimal("10000.00"),
        "currency": "USD",
    }
    assert authorization_for(account=world.beta)["reason"] == "ancestor:alpha"
    assert authorization_for(account=world.alpha)["reason"] == "on_hold"
    assert authorization_for(account=world.devsolo)["reason"] == "ok"


@pytest.mark.parametrize("status", ["on_hold", "suspended", "closed"])
def test_the_accounts_own_status_is_the_reason(world: World, status: str) -> None:
    set_status(world.acme, status)
    answer = authorization_for(account=world.acme)
    assert (answer["allowed"], answer["reason"]) == (False, status)


def test_no_credit_when_available_is_used_up(world: World) -> None:
    type(world.acme).objects.filter(pk=world.acme.pk).update(credit_limit=Decimal("1150.00"))
    usage_ingest(events=[acme_big_call()], service=True, received_at=RECEIVED)
    # 1150.00 - 1150 unbilled = 0: not allowed.
    answer = authorization_for(account=world.acme)
    assert (answer["allowed"], answer["reason"], answer["available"]) == (False, "no_credit", Decimal("0"))


def test_a_cache_miss_is_recomputed_from_the_database(world: World) -> None:
    usage_ingest(events=[acme_big_call()], service=True, received_at=RECEIVED)
    cache.clear()
    assert authorization_for(account=world.acme)["available"] == Decimal("8850")


# --- HTTP -------------------------------------------------------------------------------------


def api(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def post_batch(client: Client, body: Any) -> Any:
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/api/v1/usage/batches", data=payload, content_type="application/json")


def rejected(response: Any) -> list[tuple[int, str | None, str]]:
    """(index, request_id, reason) of each rejection in a batch's answer."""
    return [(r["index"], r["request_id"], r["reason"]) for r in response.json()["rejections"]]


@pytest.fixture
def acme_key(world: World) -> str:
    from accounts.services import api_key_create

    return api_key_create(account=world.acme, scopes=["usage"])[1]


@pytest.fixture
def beta_key(world: World) -> str:
    from accounts.services import api_key_create

    return api_key_create(account=world.beta, scopes=["usage"])[1]


def test_an_accounts_key_posts_its_usage(acme_key: str) -> None:
    event = UsageEventFactory(request_id="h-1")
    event.pop("account")
    response = post_batch(
        api(acme_key), {"events": [event, UsageEventFactory(request_id="h-2", account="beta")]}
    )
    assert response.status_code == 200
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 1,
        "rejections": [
            {
                "index": 1,
                "request_id": "h-2",
                "code": "out_of_scope",
                "reason": "account 'beta' is outside the caller's scope",
            }
        ],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "the body is not valid JSON"),
        ("[1, 2]", 'the body must be a JSON object like {"events": [...]}'),
        ({"events": {"a": 1}}, "events must be a list"),
        ({"events": [{}] * 10_001}, "a batch holds at most 10000 events, got 10001"),
        # Valid JSON nested past what the parsers follow (msgspec and the standard library stop
        # at their recursion limits), in an event or in the tags of an otherwise good event.
        ('{"events": [' + "[" * 5000 + "]" * 5000 + "]}", "the body nests too deeply"),
        (
            '{"events": [{"request_id": "d-1", "account": "acme", "model": "glm-5", '
            '"occurred_at": "2026-10-15T10:00:00Z", "tags": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}]}",
            "the body nests too deeply",
        ),
    ],
    ids=["not-json", "not-an-object", "events-not-a-list", "too-many", "deep-event", "deep-tags"],
)
def test_a_malformed_body_is_a_400_that_writes_nothing(acme_key: str, body: Any, message: str) -> None:
    response = post_batch(api(acme_key), body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert UsageBatch.objects.count() == 0


def test_numbers_json_allows_but_orjson_refuses_reject_only_their_event(acme_key: str) -> None:
    """A 2**70 token count (past 64 bits) or NaN: the body is still parsed and the event alone is
    refused, as the standard library's parser would have it."""
    huge = UsageEventFactory(request_id="h-huge")
    body = json.dumps(
        {
            "events": [
                UsageEventFactory(request_id="h-ok"),
                {**huge, "input_tokens": 2**70},
                UsageEventFactory(request_id="h-nan", output_tokens=float("nan")),
                UsageEventFactory(request_id="h-tag-nan", tags={"ratio": float("-inf")}),
                UsageEventFactory(request_id="h-tag-big", tags={"big": 2**70, "b": [1.5]}),
            ]
        }
    )
    response = post_batch(api(acme_key), body)
    assert response.status_code == 200
    assert rejected(response) == [
        (1, "h-huge", f"input_tokens is larger than {10**15}"),
        (2, "h-nan", "output_tokens must be an integer"),
        (3, "h-tag-nan", "tags must hold JSON values (not NaN or Infinity)"),
    ]
    assert response.json()["accepted"] == 2
    assert UsageEvent.objects.get(request_id="h-tag-big").tags == {"b": [1.5], "big": 2**70}


def test_nul_characters_and_unpaired_surrogates_reject_only_their_event(acme_key: str) -> None:
    """JSON can escape what PostgreSQL cannot store: a NUL character (text and jsonb refuse it) and
    half of a surrogate pair (not UTF-8). Each such event is refused on its own, whichever parser
    read the body (orjson refuses lone surrogates, so the second body goes to the standard library);
    a literal backslash-u0000 and non-ASCII text are fine."""
    event = (
        '{{"request_id": {rid}, "account": "acme", "model": "minimax-m2.5", "input_tokens": 10,'
        ' "occurred_at": "2026-10-15T10:00:00Z"{tags}}}'
    )

    def body(*events: tuple[str, str]) -> str:
        return '{"events": [' + ", ".join(event.format(rid=r, tags=t) for r, t in events) + "]}"

    with_nul = body(
        ('"z-ok"', ""),
        ('"z-\\u0000"', ""),
        ('"z-1"', ', "tags": {"p": "x\\u0000"}'),
        ('"z-2"', ', "tags": {"p\\u0000": 1}'),
        ('"z-3"', ', "tags": {"p": "\\\\u0000 is six characters"}'),
        ('"z-\\u8bf7\\u6c42"', ', "tags": {"\\u9879\\u76ee": "\\u6d4b\\u8bd5"}'),
    )
    response = post_batch(api(acme_key), with_nul)
    assert response.status_code == 200
    nul_reason = "must not contain NUL characters or unpaired surrogates"
    assert rejected(response) == [
        (1, None, f"request_id {nul_reason}"),
        (2, "z-1", f"tags {nul_reason}"),
        (3, "z-2", f"tags {nul_reason}"),
    ]
    assert response.json()["accepted"] == 3
    assert UsageEvent.objects.get(request_id="z-3").tags == {"p": "\\u0000 is six characters"}
    assert UsageEvent.objects.get(request_id="z-请求").tags == {"项目": "测试"}

    with_surrogates = body(
        ('"s-ok"', ""),
        ('"s-\\ud800"', ""),
        ('"s-1"', ', "tags": {"p": ["\\udfff"]}'),
        ('"s-2"', ', "tags": {"p": "\\ud83d\\ude00"}'),
    )
    response = post_batch(api(acme_key), with_surrogates)
    assert response.status_code == 200
    assert rejected(response) == [
        (1, None, f"request_id {nul_reason}"),
        (2, "s-1", f"tags {nul_reason}"),
    ]
    assert response.json()["accepted"] == 2
    assert UsageEvent.objects.get(request_id="s-2").tags == {"p": "\U0001f600"}


def test_authorization_is_scoped_to_the_callers_subtree(beta_key: str, world: World) -> None:
    client = api(beta_key)
    response = client.get("/api/v1/accounts/acme/authorization")
    assert response.status_code == 200
    assert response.json() == {
        "account": "acme",
        "allowed": True,
        "reason": "ok",
        "available": {"amount": "10000", "currency": "USD"},
    }
    assert client.get("/api/v1/accounts/alpha/authorization").status_code == 404
    assert client.get("/api/v1/accounts/devsolo/authorization").status_code == 404
    assert client.get("/api/v1/accounts/nobody/authorization").status_code == 404


def test_a_warm_authorization_is_answered_from_the_cache_alone_and_follows_changes(
    beta_key: str, world: World, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Once the key, the account and its credit entries are cached, the answer comes from one cache
    read in settlement.api.middleware, before URL resolving and DRF: the same answer with the same
    security headers, and it still follows a hold, a revocation and the subtree wall, which fall
    back to the full view."""
    from django.urls import reverse
    from django.urls.resolvers import URLResolver
    from rest_framework.views import APIView

    from accounts.models import ApiKey
    from accounts.services import account_update, api_key_revoke
    from settlement.api.middleware import AUTHORIZATION_PATH

    path = "/api/v1/accounts/acme/authorization"
    # The middleware's pattern is the URLconf's path.
    assert reverse("account-authorization", kwargs={"code": "acme"}) == path
    assert AUTHORIZATION_PATH.fullmatch(path)
    client = api(beta_key)
    full = client.get(path)
    assert full.status_code == 200

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full stack was asked")

    with monkeypatch.context() as patched:
        patched.setattr(APIView, "dispatch", refused)
        patched.setattr(URLResolver, "resolve", refused)
        cached = client.get(path)
        assert cached.status_code == 200
        assert cached["Content-Type"] == "application/json"
        assert cached.json() == full.json()
        assert int(cached["Content-Length"]) == len(cached.content)
        security = (
            "X-Frame-Options",
            "X-Content-Type-Options",
            "Referrer-Policy",
            "Cross-Origin-Opener-Policy",
        )
        assert [cached.get(h) for h in security] == [full.get(h) for h in security]
        assert cached["X-Frame-Options"] == "DENY"
        # A Host Django refuses goes on to Django's middleware, which refuses it.
        assert client.get(path, HTTP_HOST="evil.example").status_code == 400
        with django_capture_on_commit_callbacks(execute=True):
            account_update(account=world.beta, status="on_hold")
        assert client.get("/api/v1/accounts/acme/authorization").json()["reason"] == "ancestor:beta"

    # Outside the subtree, an unknown account, a revoked key: the full view answers.
    assert client.get("/api/v1/accounts/alpha/authorization").status_code == 404
    assert client.get("/api/v1/accounts/nobody/authorization").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=ApiKey.objects.get(account=world.beta))
    assert client.get("/api/v1/accounts/acme/authorization").status_code == 401


def test_the_schema_documents_both_calls(db: None) -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "post" in schema["paths"]["/api/v1/usage/batches"]
    assert "get" in schema["paths"]["/api/v1/accounts/{code}/authorization"]


def test_the_service_key_posts_for_any_account_and_needs_the_account_named(world: World) -> None:
    from accounts.services import api_key_create

    _, secret = api_key_create(account=None, scopes=["usage"])
    unnamed = UsageEventFactory(request_id="s-2")
    unnamed.pop("account")
    response = post_batch(
        api(secret), {"events": [UsageEventFactory(request_id="s-1", account="devsolo"), unnamed]}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["rejections"][0]["reason"] == "account is required with a service key"
    # The service key may ask about any account.
    assert api(secret).get("/api/v1/accounts/alpha/authorization").json()["reason"] == "ok"


def test_a_key_without_the_usage_scope_may_not_post(world: World) -> None:
    from accounts.services import api_key_create

    _, secret = api_key_create(account=world.acme, scopes=["read"])
    response = post_batch(api(secret), {"events": [UsageEventFactory()]})
    assert response.status_code == 403
    assert UsageBatch.objects.count() == 0


def test_no_key_is_401(db: None) -> None:
    assert (
        Client().post("/api/v1/usage/batches", data="{}", content_type="application/json").status_code == 401
    )


def test_an_ancestor_without_credit_blocks_its_subtree(world: World) -> None:
    # beta may owe alpha at most 1000.00; acme's call puts 1104 of unbilled usage on beta's account.
    type(world.beta).objects.filter(pk=world.beta.pk).update(credit_limit=Decimal("1000.00"))
    usage_ingest(events=[acme_big_call()], service=True, received_at=RECEIVED)
    # beta: 1000.00 - 1104 = -104 <= 0, so acme (8850 available of its own) is refused.
    assert authorization_for(account=world.beta)["reason"] == "no_credit"
    answer = authorization_for(account=world.acme)
    assert (answer["allowed"], answer["reason"], answer["available"]) == (
        False,
        "ancestor:beta",
        Decimal("8850"),
    )
