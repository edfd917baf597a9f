"""Prepaid statements (§7, §11.1) and billing documents (PDF, CSV, receipt), with the API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import include, path
from rest_framework.test import APIClient

from accounts.models import Topup
from settlement.models import Invoice, Statement
from settlement.services.close import close_run
from settlement.services.documents import invoice_pdf, invoices_csv, statement_pdf, topup_receipt_pdf
from tests.settlement.test_close_world import D, World, october_usage, world_build
from tests.settlement.test_invoicing import issue_all

urlpatterns = [path("api/v1/", include("settlement.api.billing_urls"))]


@pytest.fixture
def world(db: None) -> World:
    w = world_build()
    october_usage(w)
    issue_all(w)
    return w


def test_devsolos_october_statement(world: World) -> None:
    statement = Statement.objects.get(account=world.devsolo, label="2026-10")
    # 1000 calls x 40,000 input x 0.3165 (0.30 + 5.5%) / 1M = 12.66; x 10,000 output x 2.69025 / 1M
    # = 26.9025; usage 39.5625 (shown 39.56); closing 100 - 39.5625 = 60.4375 (shown 60.44).
    assert (statement.opening, statement.topups, statement.usage, statement.closing) == (
        D(0),
        D(100),
        D("39.5625"),
        D("60.4375"),
    )
    assert statement.usage_by_model == {"glm-5": "39.5625"}
    # November: opening 60.4375, no activity, still a statement (the opening is not zero).
    close_run(book=world.book, now=datetime(2026, 12, 1, tzinfo=UTC))
    november = Statement.objects.get(account=world.devsolo, label="2026-11")
    assert (november.opening, november.topups, november.usage, november.closing) == (
        D("60.4375"),
        D(0),
        D(0),
        D("60.4375"),
    )
    assert statement_pdf(statement=statement).startswith(b"%PDF")


def test_invoice_pdf_csv_and_receipt(world: World) -> None:
    acme = Invoice.objects.select_related("account", "issuer_book").get(account=world.acme)
    assert invoice_pdf(invoice=acme).startswith(b"%PDF")
    text = invoices_csv(invoices=Invoice.objects.filter(issuer_book=world.beta.own_book))
    rows = text.strip().splitlines()
    # header + 5 lines of acme's invoice
    assert len(rows) == 6
    assert rows[1].startswith("BETA-2026-000001,issued,beta,acme,2026-10,2026-11-01,2026-11-15,USD,1,usage")
    assert rows[5].endswith("Prompt engineering workshop,,,,,,500,1750,105,1855,1855")
    topup = Topup.objects.get(account=world.devsolo)
    assert topup_receipt_pdf(topup=topup).startswith(b"%PDF")


@pytest.mark.urls("tests.settlement.test_statements")
def test_the_api_shows_only_the_callers_own_invoices(world: World) -> None:
    from accounts.services import api_key_create

    _, secret = api_key_create(account=world.acme, scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    listed = client.get("/api/v1/invoices").json()
    assert [(i["number"], i["total"]) for i in listed] == [
        ("BETA-2026-000001", {"amount": "1855", "currency": "USD"})
    ]
    detail = client.get("/api/v1/invoices/BETA-2026-000001").json()
    assert len(detail["lines"]) == 5 and detail["open"]["amount"] == "1855"
    assert client.get("/api/v1/invoices/BETA-2026-000001/pdf").content.startswith(b"%PDF")
    assert client.get("/api/v1/invoices.csv").content.decode().count("BETA-2026-000001") == 5
    # beta's invoice from alpha is not acme's to see.
    assert client.get("/api/v1/invoices/ALPHA-2026-000001").status_code == 404
