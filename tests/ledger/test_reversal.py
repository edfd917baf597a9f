"""Corrections are reversals (§8): a mirror entry linked to the original, posted at most once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from distributor.errors import Conflict
from ledger.models import JournalEntry, Side
from ledger.selectors import account_balance, balances_by_counterparty
from ledger.services import entry_reverse
from tests.ledger.factories import BookFactory, at, sale

pytestmark = pytest.mark.django_db


def test_a_reversal_mirrors_every_leg_and_brings_balances_back_to_zero() -> None:
    book = BookFactory()
    original = sale(book, "invoice:9", "80.25", when=at(5), description="Invoice 9")
    mirror = entry_reverse(entry=original, occurred_at=at(20))

    assert mirror.reverses_id == original.pk
    assert original.reversed_by == mirror  # type: ignore[attr-defined]
    assert mirror.idempotency_key == "reversal:invoice:9"
    assert mirror.description == "Reversal of Invoice 9"
    assert (mirror.source_type, mirror.source_id) == ("invoice", "invoice:9")
    legs = sorted(mirror.postings.values_list("ledger_account__code", "side", "amount", "counterparty"))
    # Dr receivables / Cr revenue becomes Cr receivables / Dr revenue, same amounts and counterparty.
    assert legs == [
        ("receivables", Side.CREDIT, Decimal("80.25"), "account:acme"),
        ("revenue", Side.DEBIT, Decimal("80.25"), ""),
    ]
    # 80.25 - 80.25 = 0 on both sides, and the customer drops out of the receivables list.
    assert account_balance(book=book, account_code="receivables", currency="USD") == 0
    assert account_balance(book=book, account_code="revenue", currency="USD") == 0
    assert balances_by_counterparty(book=book, account_code="receivables", currency="USD") == {}
    # ... but history keeps both: before the reversal the sale stood.
    assert account_balance(book=book, account_code="receivables", currency="USD", as_of=at(19)) == Decimal(
        "80.25"
    )


def test_reversing_twice_under_the_same_key_returns_the_first_reversal() -> None:
    book = BookFactory()
    original = sale(book, "invoice:10", "12")
    first = entry_reverse(entry=original, occurred_at=at(20))
    second = entry_reverse(entry=original, occurred_at=at(20))
    assert second.pk == first.pk
    assert JournalEntry.objects.count() == 2
    assert account_balance(book=book, account_code="receivables", currency="USD") == 0


def test_reversing_an_entry_again_under_another_key_is_a_conflict() -> None:
    book = BookFactory()
    original = sale(book, "invoice:11", "12")
    entry_reverse(entry=original, occurred_at=at(20))
    with pytest.raises(Conflict, match="already been reversed"):
        entry_reverse(entry=original, occurred_at=at(21), idempotency_key="correction:11")
    assert JournalEntry.objects.count() == 2
    # Still 12 - 12 = 0, not -12.
    assert account_balance(book=book, account_code="receivables", currency="USD") == 0


def test_a_reversal_of_a_multi_currency_entry_mirrors_each_currency() -> None:
    from ledger.services import credit, debit, entry_post

    book = BookFactory()
    original = entry_post(
        book=book,
        idempotency_key="mixed",
        occurred_at=at(3),
        legs=[
            debit("upstream_prepayments", Decimal("710.5"), "CNY", "provider:glm"),
            credit("cash", Decimal("710.5"), "CNY"),
            debit("receivables", Decimal("3.333333333333333333"), "USD", "account:acme"),
            credit("revenue", Decimal("3.333333333333333333"), "USD"),
        ],
    )
    entry_reverse(entry=original, occurred_at=at(4))
    for code, currency in [
        ("upstream_prepayments", "CNY"),
        ("cash", "CNY"),
        ("receivables", "USD"),
        ("revenue", "USD"),
    ]:
        assert account_balance(book=book, account_code=code, currency=currency) == 0
