"""API keys: the secret is shown once, only its hash is kept; revoked and expired keys are refused."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.test import APIRequestFactory

from accounts.models import ApiKey, AuditRecord
from accounts.selectors import api_key_authenticate
from accounts.services import account_update, api_key_create, api_key_revoke
from distributor.api import ApiKeyAuthentication
from distributor.errors import ValidationFailed
from tests.accounts.factories import account, root_book

pytestmark = pytest.mark.django_db


def authenticate(secret: str):
    request = APIRequestFactory().get("/api/v1/x", HTTP_AUTHORIZATION=f"Bearer {secret}")
    return ApiKeyAuthentication().authenticate(request)


def test_key_is_hashed_and_authenticates() -> None:
    acme = account(root_book(), "acme", kind="customer")
    key, secret = api_key_create(account=acme, scopes=["usage", "read", "usage"], name="gateway")
    assert secret.startswith("dk_") and len(secret) > 40
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert stored.prefix == secret[:10] and secret not in str(ApiKey.objects.values().get())
    assert stored.scopes == ["usage", "read"]
    found = api_key_authenticate(secret=secret)
    assert found == key and found.account == acme and not found.is_service
    user, auth = authenticate(secret)
    assert auth == key and user.is_authenticated and user.account == acme
    # The audit trail names the key by its prefix, never the secret.
    record = AuditRecord.objects.get(action="api_key.create")
    assert record.after == {
        "account": "acme",
        "prefix": key.prefix,
        "scopes": ["usage", "read"],
        "expires_at": None,
    }


def test_revoked_expired_unknown_and_closed_are_refused() -> None:
    acme = account(root_book(), "acme", kind="customer")
    revoked, revoked_secret = api_key_create(account=acme, scopes=["read"])
    api_key_revoke(key=revoked)
    assert api_key_authenticate(secret=revoked_secret) is None
    first_revocation = ApiKey.objects.get(pk=revoked.pk).revoked_at
    api_key_revoke(key=revoked)  # twice keeps the first time
    assert ApiKey.objects.get(pk=revoked.pk).revoked_at == first_revocation
    assert AuditRecord.objects.filter(action="api_key.revoke").count() == 1

    _, expired_secret = api_key_create(
        account=acme, scopes=["read"], expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert api_key_authenticate(secret=expired_secret) is None
    _, live_secret = api_key_create(
        account=acme, scopes=["read"], expires_at=timezone.now() + timedelta(days=1)
    )
    assert api_key_authenticate(secret=live_secret) is not None
    assert api_key_authenticate(secret="dk_not-a-key") is None
    assert api_key_authenticate(secret="") is None
    with pytest.raises(exceptions.AuthenticationFailed):
        authenticate(revoked_secret)
    account_update(account=acme, status="closed")
    assert api_key_authenticate(secret=live_secret) is None


def test_service_key_and_scope_rules() -> None:
    key, secret = api_key_create(account=None, scopes=["usage"], name="gateway")
    found = api_key_authenticate(secret=secret)
    assert found == key and found.is_service and found.account is None
    with pytest.raises(ValidationFailed, match="at least one scope"):
        api_key_create(account=None, scopes=[])
    with pytest.raises(ValidationFailed, match="scope must be one of"):
        api_key_create(account=None, scopes=["admin"])
