"""Factories for the upstream side. They build through the services, as the admin and the
scenario loader do, so what a test sets up is what production would have written."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import factory

from ledger.models import Book, LedgerAccount
from ledger.services import book_create
from procurement.models import Provider, ProviderModel
from procurement.services import provider_create, provider_model_create


class BookFactory(factory.Factory):
    class Meta:
        model = Book

    code = factory.Sequence(lambda n: f"book{n}")
    name = factory.LazyAttribute(lambda o: f"Book {o.code}")
    currency = "USD"
    timezone = "UTC"

    @classmethod
    def _create(cls, model_class: type[Book], *args: Any, **kwargs: Any) -> Book:
        return book_create(**kwargs)


class ProviderFactory(factory.Factory):
    class Meta:
        model = Provider

    code = factory.Sequence(lambda n: f"vendor{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    currency = "USD"

    @classmethod
    def _create(cls, model_class: type[Provider], *args: Any, **kwargs: Any) -> Provider:
        return provider_create(**kwargs)


class ProviderModelFactory(factory.Factory):
    class Meta:
        model = ProviderModel

    provider = factory.SubFactory(ProviderFactory)
    code = factory.Sequence(lambda n: f"model-{n}")

    @classmethod
    def _create(cls, model_class: type[ProviderModel], *args: Any, **kwargs: Any) -> ProviderModel:
        return provider_model_create(**kwargs)


def at(text: str) -> datetime:
    """An instant written as an ISO string, UTC unless it says otherwise."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def balance(book: Book, code: str, currency: str = "USD", counterparty: str | None = None) -> Decimal:
    """A ledger account's balance on its normal side (debits - credits for debit-normal)."""
    account = LedgerAccount.objects.get(book=book, code=code)
    rows = account.balances.filter(currency=currency)
    if counterparty is not None:
        rows = rows.filter(counterparty=counterparty)
    net = sum((r.debits - r.credits for r in rows), Decimal(0))
    return net if account.normal_side == "debit" else -net
