"""The admin writes through the services: a purchase added there posts to the ledger, a new price
version is appended, past versions stay read-only, and the provider page shows cover."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client

from ledger.models import JournalEntry
from procurement.models import ListPriceVersion, QuotaPurchase
from procurement.services import list_price_set, quota_purchase_record
from tests.procurement.factories import BookFactory, ProviderFactory, ProviderModelFactory, at, balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("finance", "f@example.com", "pw"))
    return client


def test_a_purchase_added_in_the_admin_posts_through_the_service(staff: Client) -> None:
    book = BookFactory()
    vendor = ProviderFactory(code="doubao")
    response = staff.post(
        "/admin/procurement/quotapurchase/add/",
        {
            "book": book.pk,
            "provider": vendor.pk,
            "paid": "450.00",
            "credit": "500",
            "currency": "USD",
            "purchased_at_0": "2026-10-01",
            "purchased_at_1": "00:00:00",
            "expires_on": "2026-12-31",
            "reference": "PO-77",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    purchase = QuotaPurchase.objects.get(reference="PO-77")
    assert purchase.remaining_credit == Decimal("500")
    assert balance(book, "upstream_prepayments") == Decimal("450.00")
    # A rule broken in the service is a message, not a 500: the provider deals in USD.
    response = staff.post(
        "/admin/procurement/quotapurchase/add/",
        {
            "book": book.pk,
            "provider": vendor.pk,
            "paid": "1.00",
            "credit": "5",
            "currency": "CNY",
            "purchased_at_0": "2026-10-01",
            "purchased_at_1": "00:00:00",
        },
        follow=True,
    )
    assert b"Provider doubao deals in USD, not CNY" in response.content
    assert JournalEntry.objects.filter(book=book).count() == 1
    assert staff.get(f"/admin/procurement/quotapurchase/{purchase.pk}/change/").status_code == 200


def test_provider_page_shows_cover_and_model_page_appends_prices(staff: Client) -> None:
    book = BookFactory(code="root")
    vendor = ProviderFactory(code="deepseek")
    model = ProviderModelFactory(provider=vendor, code="deepseek-v4")
    list_price_set(model=model, effective_from=at("2026-01-01T00:00:00"), prices={"input": Decimal("0.27")})
    quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("90.00"),
        credit=Decimal("100"),
        currency="USD",
        purchased_at=at("2026-01-01T00:00:00"),
    )
    page = staff.get(f"/admin/procurement/provider/{vendor.pk}/change/")
    assert page.status_code == 200
    assert b"root: remaining 100.00 at list / 90.00 at cost USD" in page.content
    assert staff.get("/admin/procurement/provider/").status_code == 200
    assert staff.get("/admin/procurement/upstreampayment/add/").status_code == 200

    existing = ListPriceVersion.objects.get(model=model)
    response = staff.post(
        f"/admin/procurement/providermodel/{model.pk}/change/",
        {
            "name": "DeepSeek V4",
            "list_prices-TOTAL_FORMS": "2",
            "list_prices-INITIAL_FORMS": "1",
            "list_prices-MIN_NUM_FORMS": "0",
            "list_prices-MAX_NUM_FORMS": "1000",
            "list_prices-0-id": existing.pk,
            "list_prices-0-model": model.pk,
            "list_prices-1-model": model.pk,
            "list_prices-1-effective_from_0": "2099-01-01",
            "list_prices-1-effective_from_1": "00:00:00",
            "list_prices-1-input": "0.20",
            "list_prices-1-output": "1.10",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    versions = list(ListPriceVersion.objects.filter(model=model).order_by("effective_from"))
    assert [(v.input, v.output) for v in versions] == [
        (Decimal("0.27"), None),
        (Decimal("0.20"), Decimal("1.10")),
    ]
