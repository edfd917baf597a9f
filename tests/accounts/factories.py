"""Factories for the account tree's tests. Procurement rows are built directly (their service is
another app's); accounts always go through `accounts.services` so the tree rules hold."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import factory

from accounts.models import Account
from accounts.services import account_create
from ledger.models import Book
from ledger.services import book_create
from procurement.models import ListPriceVersion, Provider, ProviderModel

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


def root_book(code: str = "platform", timezone: str = "UTC", grace_days: int = 0) -> Book:
    return book_create(
        code=code, name="Platform Ltd", currency="USD", timezone=timezone, grace_days=grace_days
    )


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"provider{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    currency = "USD"


class ProviderModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderModel
        django_get_or_create = ("code",)

    provider = factory.SubFactory(ProviderFactory)
    code = factory.Sequence(lambda n: f"model-{n}")


class ListPriceVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ListPriceVersion

    model = factory.SubFactory(ProviderModelFactory)
    effective_from = JAN_1
    input = None
    cached_input = None
    cache_write = None
    output = None


def model_with_prices(provider: str, model: str, at: datetime = JAN_1, **prices: str) -> ProviderModel:
    """A provider's model with one list-price version (prices as decimal strings)."""
    found = ProviderModelFactory(code=model, provider=ProviderFactory(code=provider))
    ListPriceVersionFactory(model=found, effective_from=at, **{k: Decimal(v) for k, v in prices.items()})
    return found


def account(book: Book, code: str, parent: Account | None = None, **fields: Any) -> Account:
    """An account with the terms the tests do not care about filled in (monthly, USD)."""
    defaults: dict[str, Any] = {
        "name": code.title(),
        "kind": "distributor",
        "currency": "USD",
        "terms": "monthly",
        "credit_limit": Decimal("1000.00"),
    }
    defaults.update(fields)
    if defaults["terms"] == "prepaid":
        defaults["credit_limit"] = None
    return account_create(root_book=book, code=code, parent=parent, **defaults)
