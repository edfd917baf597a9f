"""Factories for the ledger's tests: books always come from `book_create` so they get their chart."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import factory

from ledger.models import Book, JournalEntry
from ledger.services import Leg, book_create, credit, debit, entry_post


def at(day: int, hour: int = 12, month: int = 1) -> datetime:
    """A moment in 2026 (UTC): the worked examples' calendar."""
    return datetime(2026, month, day, hour, tzinfo=UTC)


class BookFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Book

    code = factory.Sequence(lambda n: f"book{n}")
    name = factory.LazyAttribute(lambda o: f"{o.code.title()} Ltd")
    currency = "USD"
    timezone = "UTC"
    grace_days = 0

    @classmethod
    def _create(cls, model_class: type[Book], *args: Any, **kwargs: Any) -> Book:
        return book_create(**kwargs)


def sale(
    book: Book,
    key: str,
    amount: str,
    *,
    customer: str = "account:acme",
    currency: str = "USD",
    when: datetime | None = None,
    description: str = "",
) -> JournalEntry:
    """Invoice a customer: Dr receivables (customer) / Cr revenue."""
    value = Decimal(amount)
    return entry_post(
        book=book,
        idempotency_key=key,
        occurred_at=when or at(5),
        legs=[debit("receivables", value, currency, customer), credit("revenue", value, currency)],
        description=description or f"Sale {key}",
        source_type="invoice",
        source_id=key,
    )


def receipt(
    book: Book,
    key: str,
    amount: str,
    *,
    customer: str = "account:acme",
    currency: str = "USD",
    when: datetime | None = None,
) -> JournalEntry:
    """A customer pays: Dr cash / Cr receivables (customer)."""
    value = Decimal(amount)
    return entry_post(
        book=book,
        idempotency_key=key,
        occurred_at=when or at(10),
        legs=[debit("cash", value, currency), credit("receivables", value, currency, customer)],
        description=f"Payment {key}",
        source_type="payment",
        source_id=key,
    )


def legs_of(entry: JournalEntry) -> list[Leg]:
    return [
        Leg(p.ledger_account.code, p.side, p.amount, p.currency, p.counterparty)
        for p in entry.postings.select_related("ledger_account").order_by("id")
    ]
