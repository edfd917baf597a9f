"""Days of cover per provider (§3): remaining credit over the trailing 7-day daily burn."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from procurement.selectors import provider_cover, providers_cover
from procurement.services import quota_purchase_record, upstream_cost_draw
from tests.procurement.factories import BookFactory, ProviderFactory, at

pytestmark = pytest.mark.django_db


def test_cover_from_remaining_credit_and_trailing_burn() -> None:
    book = BookFactory()
    vendor = ProviderFactory(code="qwen")
    quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("900.00"),
        credit=Decimal("1000"),
        currency="USD",
        purchased_at=at("2026-10-01T00:00:00"),
    )
    # A purchase that lapsed before `now` does not count, even unbooked.
    quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("50.00"),
        credit=Decimal("50"),
        currency="USD",
        purchased_at=at("2026-10-01T00:00:00"),
        expires_on=date(2026, 10, 19),
    )
    now = at("2026-10-20T00:00:00")
    for key, when, amount in (
        ("old", "2026-10-12T23:59:59", "50"),  # 8 days back: outside the window (drawn from the lapsing one)
        ("w1", "2026-10-13T00:00:00", "60"),  # exactly 7 days back: inside
        ("w2", "2026-10-19T23:59:59", "80"),
        ("future", "2026-10-20T00:00:00", "5"),  # at `now`: not before now, so outside
    ):
        upstream_cost_draw(
            book=book,
            provider=vendor,
            list_charge=Decimal(amount),
            currency="USD",
            at=at(when),
            idempotency_key=key,
        )
    cover = provider_cover(book=book, provider=vendor, now=now)
    # Remaining: 1000 - 60 - 80 - 5 = 855 at list, x 0.9 = 769.5 at cost.
    # Burn: 60 + 80 = 140 in 7 days = 20 a day; cover 855 / 20 = 42.75 days >= 14.
    assert (cover.remaining_list, cover.remaining_cost) == (Decimal("855"), Decimal("769.5"))
    assert (cover.burn_7d_list, cover.daily_burn_list) == (Decimal("140"), Decimal("20"))
    assert cover.days_of_cover == Decimal("42.75")
    assert (cover.threshold_days, cover.low_cover) == (14, False)
    assert provider_cover(book=book, provider=vendor, now=now, threshold_days=45).low_cover is True
    assert [c.provider_code for c in providers_cover(book=book, now=now)] == ["qwen"]


def test_no_burn_means_no_cover_figure_and_no_alert() -> None:
    book = BookFactory()
    vendor = ProviderFactory()
    cover = provider_cover(book=book, provider=vendor, now=at("2026-10-20T00:00:00"))
    assert (cover.remaining_list, cover.days_of_cover, cover.low_cover) == (Decimal(0), None, False)


def test_burning_with_nothing_left_is_zero_days_and_low() -> None:
    book = BookFactory()
    vendor = ProviderFactory()
    upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("7"),
        currency="USD",
        at=at("2026-10-19T00:00:00"),
        idempotency_key="x",
    )
    cover = provider_cover(book=book, provider=vendor, now=at("2026-10-20T00:00:00"))
    assert (cover.days_of_cover, cover.low_cover) == (Decimal("0.00"), True)
