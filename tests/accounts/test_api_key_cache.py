"""The authentication cache of API keys: a warm entry answers without the database, yet a revoked
key or a closed account's key is refused on the very next request and expiry is still honoured."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.selectors import API_KEY_CACHE_SECONDS, api_key_authenticate
from accounts.services import account_update, api_key_create, api_key_revoke
from tests.accounts.factories import account, root_book

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def authorization(secret: str, code: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return int(client.get(f"/api/v1/accounts/{code}/authorization").status_code)


def test_warm_key_answers_without_the_database(django_assert_num_queries: Any) -> None:
    acme = account(root_book(), "acme", kind="customer")
    key, secret = api_key_create(account=acme, scopes=["usage", "read"], name="gateway")
    with django_assert_num_queries(1):
        first = api_key_authenticate(secret=secret)  # cold: one read, then cached
    with django_assert_num_queries(0):
        again = api_key_authenticate(secret=secret)
        assert again is not None
        assert again == key and again.account_id == acme.pk and again.scopes == ["usage", "read"]
        assert again.prefix == key.prefix and again.name == "gateway" and not again.is_service
    assert first == again
    # The account is loaded only when a view asks for it (the reseller API does; authorization does not).
    with django_assert_num_queries(1):
        assert again.account == acme


def test_revoked_key_is_refused_on_the_next_request_with_the_cache_warm() -> None:
    acme = account(root_book(), "acme", kind="customer")
    _, secret = api_key_create(account=acme, scopes=["usage"])
    assert authorization(secret, "acme") == 200
    assert authorization(secret, "acme") == 200  # answered from the warm cache entry
    api_key_revoke(key=ApiKey.objects.get())
    assert authorization(secret, "acme") == 401
    assert api_key_authenticate(secret=secret) is None


def test_revocation_rewrites_the_entry_on_commit_over_a_stale_reader(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """A request that read the row just before the revocation committed must not put the live key
    back: readers only add, the commit's rewrite sets."""
    acme = account(root_book(), "acme", kind="customer")
    key, secret = api_key_create(account=acme, scopes=["usage"])
    assert api_key_authenticate(secret=secret) is not None
    stale = cache.get(f"api-key:v1:{key.secret_hash}")
    assert stale is not None and stale[4] is False  # (id, account, scopes, expires, revoked, ...)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        api_key_revoke(key=key)
    assert len(callbacks) == 1
    assert cache.get(f"api-key:v1:{key.secret_hash}")[4] is True
    # The stale reader now tries to cache what it read: refused, the revoked entry stays.
    assert cache.add(f"api-key:v1:{key.secret_hash}", stale, API_KEY_CACHE_SECONDS) is False
    assert api_key_authenticate(secret=secret) is None


def test_expiry_is_honoured_from_the_cache(django_assert_num_queries: Any) -> None:
    acme = account(root_book(), "acme", kind="customer")
    key, secret = api_key_create(account=acme, scopes=["read"], expires_at=NOON)
    # One second before noon the key works and its entry is cached (expiry 12:00:00 included in it).
    assert api_key_authenticate(secret=secret, now=NOON - timedelta(seconds=1)) == key
    with django_assert_num_queries(0):
        assert api_key_authenticate(secret=secret, now=NOON - timedelta(microseconds=1)) == key
        # At noon exactly it has expired (expires_at <= now), answered from the same cached entry.
        assert api_key_authenticate(secret=secret, now=NOON) is None
        assert api_key_authenticate(secret=secret, now=NOON + timedelta(seconds=1)) is None
    # Warmed over HTTP on the real clock, then asked an hour past expiry: refused from the entry.
    _, soon_secret = api_key_create(
        account=acme, scopes=["read"], expires_at=datetime.now(UTC) + timedelta(minutes=30)
    )
    assert authorization(soon_secret, "acme") == 200
    with django_assert_num_queries(0):
        assert api_key_authenticate(secret=soon_secret, now=datetime.now(UTC) + timedelta(hours=1)) is None


def test_closing_and_reopening_the_account_reach_its_cached_keys() -> None:
    acme = account(root_book(), "acme", kind="customer")
    _, secret = api_key_create(account=acme, scopes=["usage"])
    _, service_secret = api_key_create(account=None, scopes=["usage"])
    assert authorization(secret, "acme") == 200 and authorization(service_secret, "acme") == 200
    account_update(account=acme, status="on_hold")  # not closed: the key still authenticates
    assert authorization(secret, "acme") == 200
    account_update(account=acme, status="closed")
    assert authorization(secret, "acme") == 401
    assert authorization(service_secret, "acme") == 200  # the gateway's key has no account to close
    account_update(account=acme, status="active")
    assert authorization(secret, "acme") == 200


def test_unknown_secrets_are_not_cached() -> None:
    assert api_key_authenticate(secret="dk_not-a-key") is None
    assert cache.get(f"api-key:v1:{ApiKey.hash_of('dk_not-a-key')}") is None
