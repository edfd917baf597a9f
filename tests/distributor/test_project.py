"""The house: settings fail loudly, errors render as 4xx JSON, health and schema answer."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DataError
from django.test import Client
from rest_framework.exceptions import ValidationError as DRFValidationError

from distributor import settings as project_settings
from distributor.api import exception_handler
from distributor.errors import Conflict, NotFound, ValidationFailed
from distributor.money import Money, round_minor, to_decimal


def test_database_url_is_parsed_and_other_schemes_refused() -> None:
    db = project_settings.database_from_url("postgres://bob:s%40cret@db.internal:6543/books")
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "books",
        "bob",
        "s@cret",
        "db.internal",
        "6543",
    )
    socket = project_settings.database_from_url("postgresql://postgres:@/postgres?host=/tmp/pg")
    assert socket["HOST"] == "/tmp/pg"
    with pytest.raises(ImproperlyConfigured, match="postgres://"):
        project_settings.database_from_url("sqlite:///db.sqlite3")


def test_bad_environment_values_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        project_settings.env_bool("X_FLAG", False)
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        project_settings.env_int("X_NUM", 1)
    monkeypatch.delenv("X_REQUIRED", raising=False)
    with pytest.raises(ImproperlyConfigured, match="required"):
        project_settings.env_str("X_REQUIRED")


def test_application_errors_render_as_4xx_json() -> None:
    response = exception_handler(Conflict("invoice already issued", details={"invoice": 7}), {})
    assert response is not None
    assert response.status_code == 409
    assert response.data == {
        "error": {"code": "conflict", "message": "invoice already issued", "details": {"invoice": 7}}
    }
    assert exception_handler(NotFound("no such account"), {}).status_code == 404  # type: ignore[union-attr]
    drf = exception_handler(DRFValidationError({"amount": ["required"]}), {})
    assert drf is not None and drf.status_code == 400
    assert drf.data["error"]["code"] == "validation_failed"
    assert drf.data["error"]["details"] == {"amount": ["required"]}
    # A value the database cannot hold is the client's input: 400, never 500.
    overflow = exception_handler(DataError("numeric field overflow"), {})
    assert overflow is not None and overflow.status_code == 400


@pytest.mark.django_db
def test_healthz_checks_the_database(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client: Client) -> None:
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"openapi" in schema.content
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_unauthenticated_api_calls_get_a_json_401(client: Client) -> None:
    response = client.get("/api/v1/accounts/acme/authorization", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code in (401, 404)


def test_money_rounds_half_up_and_refuses_floats_and_mixed_currencies() -> None:
    # 39.5625 -> 39.56 ; 60.4375 -> 60.44 ; 0.005 -> 0.01 (half-up, not banker's)
    assert round_minor(Decimal("39.5625"), "USD") == Decimal("39.56")
    assert round_minor(Decimal("60.4375"), "USD") == Decimal("60.44")
    assert round_minor(Decimal("0.005"), "USD") == Decimal("0.01")
    assert round_minor(Decimal("0.125"), "CNY") == Decimal("0.13")
    assert to_decimal("0.30") == Decimal("0.30")
    with pytest.raises(ValidationFailed):
        to_decimal(0.30)
    with pytest.raises(ValidationFailed):
        to_decimal("1e")
    with pytest.raises(ValidationFailed, match="cannot combine"):
        Money(Decimal(1), "USD") + Money(Decimal(1), "CNY")
    assert (Money(Decimal("1.005"), "USD") + Money(Decimal("2"), "USD")).rounded() == Money(
        Decimal("3.01"), "USD"
    )
