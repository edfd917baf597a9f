"""API keys over the API (secret shown once, hashed at rest, revoked and expired refused) and the
per-key rate limit (429 in the error body)."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_create
from tests.api.conftest import ApiWorld, api, error_of


def test_create_list_revoke_keys_for_a_child(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    created = beta.post("/api/v1/accounts/acme/api-keys", {"name": "ci", "scopes": ["read"]}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    # Hashed at rest: the row holds the SHA-256 and a 10-character prefix, never the secret.
    key = ApiKey.objects.get(pk=created.json()["id"])
    assert (
        key.secret_hash == ApiKey.hash_of(secret) and secret.startswith(key.prefix) and len(key.prefix) == 10
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM accounts_apikey WHERE secret_hash = %s OR prefix = %s", [secret, secret]
        )
        assert cursor.fetchone() == (0,)
    listed = beta.get("/api/v1/accounts/acme/api-keys").json()["results"]
    assert "secret" not in listed[0] and {k["name"] for k in listed} == {"ci", "all"}
    assert api(secret).get("/api/v1/accounts/acme").status_code == 200
    revoked = beta.post(f"/api/v1/accounts/acme/api-keys/{key.pk}/revoke")
    assert revoked.json()["active"] is False
    refused = api(secret).get("/api/v1/accounts/acme")
    assert refused.status_code == 401 and error_of(refused)["code"] == "authentication_failed"
    assert beta.get("/api/v1/accounts/acme/api-keys?active=true").json()["count"] == 1


def test_expired_and_unknown_keys_are_401(aw: ApiWorld) -> None:
    _, secret = api_key_create(
        account=aw.world.beta, scopes=["read"], expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert api(secret).get("/api/v1/accounts").status_code == 401
    assert api("dk_not-a-key").get("/api/v1/accounts").status_code == 401
    assert api("").get("/api/v1/accounts").status_code == 401


def test_a_key_cannot_grant_more_than_it_has(aw: ApiWorld) -> None:
    _, read_manage = api_key_create(account=aw.world.beta, scopes=["read", "manage"])
    response = api(read_manage).post("/api/v1/accounts/acme/api-keys", {"scopes": ["usage"]}, format="json")
    assert response.status_code == 403 and error_of(response)["details"] == {"scopes": ["usage"]}
    past = api(read_manage).post(
        "/api/v1/accounts/acme/api-keys",
        {"scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"},
        format="json",
    )
    assert past.status_code == 400


@override_settings(API_KEY_RATE="3/min")
def test_rate_limit_is_per_key_and_answers_429(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    assert [beta.get("/api/v1/accounts").status_code for _ in range(3)] == [200, 200, 200]
    throttled = beta.get("/api/v1/accounts/beta")
    assert throttled.status_code == 429 and error_of(throttled)["code"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    # Another key of the same account has its own allowance.
    _, other = api_key_create(account=aw.world.beta, scopes=["read"])
    assert api(other).get("/api/v1/accounts").status_code == 200
