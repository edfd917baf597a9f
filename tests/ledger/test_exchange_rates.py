"""Exchange rates are dated data (§2): append-only, looked up as the latest rate at or before a time."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from distributor.errors import Conflict, NotFound, ValidationFailed
from ledger.models import ExchangeRate
from ledger.selectors import exchange_rate
from ledger.services import exchange_rate_set
from tests.ledger.factories import at

pytestmark = pytest.mark.django_db


def test_the_rate_in_force_is_the_latest_at_or_before_the_time() -> None:
    jan = exchange_rate_set(base="USD", quote="CNY", rate=Decimal("7.1234567891"), effective_at=at(1))
    feb = exchange_rate_set(base="USD", quote="CNY", rate=Decimal("7.2"), effective_at=at(1, month=2))
    assert exchange_rate(base="USD", quote="CNY", at=at(15)) == jan
    assert exchange_rate(base="USD", quote="CNY", at=at(1, month=2)) == feb  # effective at that instant
    assert exchange_rate(base="USD", quote="CNY", at=at(1, month=2) - timedelta(microseconds=1)) == jan
    assert exchange_rate(base="USD", quote="CNY", at=at(20, month=3)).rate == Decimal("7.2")
    with pytest.raises(NotFound, match="no USD/CNY exchange rate in force"):
        exchange_rate(base="USD", quote="CNY", at=at(1) - timedelta(seconds=1))
    # A pair is directional: CNY/USD was never entered.
    with pytest.raises(NotFound):
        exchange_rate(base="CNY", quote="USD", at=at(15))
    # A currency against itself is 1, unsaved.
    same = exchange_rate(base="USD", quote="USD", at=at(15))
    assert (same.rate, same.pk) == (Decimal(1), None)


def test_entering_the_same_rate_again_is_idempotent_and_a_different_one_is_a_conflict() -> None:
    first = exchange_rate_set(base="USD", quote="CNY", rate=Decimal("7.10"), effective_at=at(1))
    again = exchange_rate_set(base="USD", quote="CNY", rate=Decimal("7.1"), effective_at=at(1))
    assert again.pk == first.pk
    with pytest.raises(Conflict, match="a different USD/CNY rate"):
        exchange_rate_set(base="USD", quote="CNY", rate=Decimal("7.11"), effective_at=at(1))
    assert ExchangeRate.objects.get().rate == Decimal("7.1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": Decimal("0")}, "positive"),
        ({"rate": Decimal("-7")}, "positive"),
        ({"rate": Decimal("7.12345678901")}, "10 decimal places"),
        ({"rate": 7.1}, "decimal string"),
        ({"quote": "USD"}, "two different currencies"),
        ({"quote": "XXX"}, "unknown currency"),
        ({"effective_at": at(1).replace(tzinfo=None)}, "time zone"),
    ],
    ids=["zero", "negative", "11-places", "float", "same-currency", "unknown-currency", "naive"],
)
def test_a_bad_rate_is_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "base": "USD",
        "quote": "CNY",
        "rate": Decimal("7.1"),
        "effective_at": at(1),
    } | kwargs
    with pytest.raises(ValidationFailed, match=message):
        exchange_rate_set(**args)  # type: ignore[arg-type]
    assert ExchangeRate.objects.count() == 0
