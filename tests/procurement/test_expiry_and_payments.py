"""Breakage at expiry (§3, §11.5) and payments to providers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from distributor.errors import Conflict, ValidationFailed
from ledger.models import JournalEntry
from procurement.models import QuotaPurchase
from procurement.selectors import upstream_payables, upstream_prepaid_at_cost
from procurement.services import (
    purchases_expire,
    quota_purchase_record,
    upstream_cost_draw,
    upstream_payment_record,
)
from procurement.tasks import purchases_expire_due_task, purchases_expire_task
from tests.procurement.factories import BookFactory, ProviderFactory, at, balance

pytestmark = pytest.mark.django_db


def test_breakage_is_booked_once_at_the_end_of_the_expiry_date_in_the_books_zone() -> None:
    """paid 100.00 for 300 credit (rate 1/3), expiring 2026-12-31 in Asia/Shanghai, i.e. at
    2026-12-31T16:00Z. 1 of credit is used (cost 0.333333333333333333). The 299 left cost
    100 - 0.333333333333333333 = 99.666666666666666667; breakage in the minor unit is 99.67 and the
    0.003333333333333333 booked beyond the exact figure comes back off cost of sales."""
    book = BookFactory(timezone="Asia/Shanghai")
    vendor = ProviderFactory(code="kimi")
    purchase = quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("100.00"),
        credit=Decimal("300"),
        currency="USD",
        purchased_at=at("2026-10-01T00:00:00"),
        expires_on=date(2026, 12, 31),
    )
    assert purchase.expires_at == at("2026-12-31T16:00:00")
    used = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("1"),
        currency="USD",
        at=at("2026-12-31T15:59:59"),
        idempotency_key="last-second",
    )
    assert used.cost == Decimal("0.333333333333333333")

    assert purchases_expire(book=book, now=at("2026-12-31T15:59:59")) == []
    expired = purchases_expire(book=book, now=at("2026-12-31T16:00:00"))
    assert [p.pk for p in expired] == [purchase.pk]
    purchase.refresh_from_db()
    assert (purchase.breakage_list, purchase.breakage_amount, purchase.remaining_credit) == (
        Decimal("299"),
        Decimal("99.67"),
        Decimal(0),
    )
    entry = purchase.breakage_entry
    assert entry is not None and entry.occurred_at == at("2026-12-31T16:00:00")
    assert sorted((p.ledger_account.code, p.side, p.amount) for p in entry.postings.all()) == [
        ("breakage_loss", "debit", Decimal("99.67")),
        ("cost_of_sales", "credit", Decimal("0.003333333333333333")),
        ("upstream_prepayments", "credit", Decimal("99.666666666666666667")),
    ]
    # Nothing left prepaid; breakage 99.67 + cost of sales 0.33 (0.3333.. - 0.0033..) = the 100.00 paid.
    assert balance(book, "upstream_prepayments") == Decimal(0)
    assert upstream_prepaid_at_cost(book=book, currency="USD") == Decimal(0)
    assert balance(book, "breakage_loss") == Decimal("99.67")
    assert balance(book, "cost_of_sales") == Decimal("0.330000000000000000")
    # A rerun (or the nightly task) finds nothing more to book.
    assert purchases_expire(book=book, now=at("2027-01-05T00:00:00")) == []
    assert purchases_expire_task(book.pk, "2027-01-05T00:00:00+00:00") == 0
    assert (
        JournalEntry.objects.filter(book=book, source_type="quota_purchase").count() == 2
    )  # purchase + breakage
    # Usage from after the lapse accrues at list.
    late = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("3"),
        currency="USD",
        at=at("2026-12-31T16:00:00"),
        idempotency_key="after-lapse",
    )
    assert (late.accrued_payable, late.draws) == (Decimal("3"), ())


def test_breakage_rounded_down_puts_the_residue_into_cost_of_sales() -> None:
    """paid 10.00 for 3 credit (rate 10/3); 2 used cost 6.666666666666666667, leaving
    3.333333333333333333 at cost: breakage 3.33 and 0.003333333333333333 to cost of sales."""
    book = BookFactory()
    vendor = ProviderFactory()
    purchase = quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("10.00"),
        credit=Decimal("3"),
        currency="USD",
        purchased_at=at("2026-10-01T00:00:00"),
        expires_on=date(2026, 10, 31),
    )
    upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("2"),
        currency="USD",
        at=at("2026-10-02T00:00:00"),
        idempotency_key="two",
    )
    # Through the task, as beat runs it: the UTC book lapses at 2026-11-01T00:00Z.
    assert purchases_expire_due_task("2026-11-01T00:00:00+00:00") == 1
    purchase.refresh_from_db()
    assert purchase.breakage_amount == Decimal("3.33")
    assert balance(book, "breakage_loss") == Decimal("3.33")
    # 6.666666666666666667 drawn + 0.003333333333333333 residue = 6.67; 6.67 + 3.33 = 10.00 paid.
    assert balance(book, "cost_of_sales") == Decimal("6.67")
    assert balance(book, "upstream_prepayments") == Decimal(0)


def test_a_fully_used_purchase_expires_without_an_entry() -> None:
    book = BookFactory()
    vendor = ProviderFactory()
    purchase = quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("5.00"),
        credit=Decimal("5"),
        currency="USD",
        purchased_at=at("2026-10-01T00:00:00"),
        expires_on=date(2026, 10, 31),
    )
    upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("5"),
        currency="USD",
        at=at("2026-10-02T00:00:00"),
        idempotency_key="all",
    )
    purchases_expire(book=book, now=at("2026-11-01T00:00:00"))
    purchase.refresh_from_db()
    assert (purchase.breakage_amount, purchase.breakage_entry, purchase.expired_at) == (
        Decimal(0),
        None,
        at("2026-11-01T00:00:00"),
    )


def test_an_upstream_payment_settles_the_payable_once() -> None:
    book = BookFactory()
    anthropic = ProviderFactory(code="anthropic")
    upstream_cost_draw(
        book=book,
        provider=anthropic,
        list_charge=Decimal("100.00"),
        currency="USD",
        at=at("2026-10-16T09:00:00"),
        idempotency_key="acme-2",
    )
    assert upstream_payables(book=book, currency="USD") == Decimal("100.00")
    payment = upstream_payment_record(
        book=book,
        provider=anthropic,
        amount=Decimal("60.00"),
        currency="USD",
        paid_at=at("2026-11-05T00:00:00"),
        reference="WIRE-7",
    )
    # 100.00 owed - 60.00 paid = 40.00 still owed; cash down 60.00.
    assert upstream_payables(book=book, currency="USD", provider=anthropic) == Decimal("40.00")
    assert balance(book, "cash") == Decimal("-60.00")
    again = upstream_payment_record(
        book=book,
        provider=anthropic,
        amount=Decimal("60"),
        currency="USD",
        paid_at=at("2026-11-05T00:00:00"),
        reference="WIRE-7",
    )
    assert again.pk == payment.pk
    assert balance(book, "cash") == Decimal("-60.00")
    with pytest.raises(Conflict):
        upstream_payment_record(
            book=book,
            provider=anthropic,
            amount=Decimal("61.00"),
            currency="USD",
            paid_at=at("2026-11-05T00:00:00"),
            reference="WIRE-7",
        )
    with pytest.raises(ValidationFailed, match="minor unit"):
        upstream_payment_record(
            book=book,
            provider=anthropic,
            amount=Decimal("1.005"),
            currency="USD",
            paid_at=at("2026-11-05T00:00:00"),
            reference="WIRE-8",
        )


def test_prepaid_at_cost_as_of_a_date_matches_the_books_then() -> None:
    """Bought 900 for 1000 on Oct 1 expiring Oct 31 (UTC); 100 drawn Oct 10 (cost 90); expiry booked.
    As of Oct 5: 900; as of Oct 15: 810; as of Nov 1 (expired and booked): 0."""
    book = BookFactory()
    vendor = ProviderFactory()
    quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("900.00"),
        credit=Decimal("1000"),
        currency="USD",
        purchased_at=at("2026-10-01T00:00:00"),
        expires_on=date(2026, 10, 31),
    )
    upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("100"),
        currency="USD",
        at=at("2026-10-10T00:00:00"),
        idempotency_key="d",
    )
    purchases_expire(book=book, now=at("2026-11-02T00:00:00"))
    assert upstream_prepaid_at_cost(book=book, currency="USD", as_of=at("2026-09-30T00:00:00")) == Decimal(0)
    assert upstream_prepaid_at_cost(book=book, currency="USD", as_of=at("2026-10-05T00:00:00")) == Decimal(
        "900"
    )
    assert upstream_prepaid_at_cost(book=book, currency="USD", as_of=at("2026-10-15T00:00:00")) == Decimal(
        "810"
    )
    assert upstream_prepaid_at_cost(book=book, currency="USD", as_of=at("2026-11-01T00:00:00")) == Decimal(0)
    assert QuotaPurchase.objects.get().breakage_amount == Decimal("810.00")
