"""Money discipline (§2): exact decimals, one rounding mode, currencies never mixed.

Amounts are stored in plain NUMERIC columns beside an ISO 4217 currency column rather than
django-money's composite field: the ledger's database triggers and the COPY-based ingestion work on
plain columns, and every amount here already travels with its currency explicitly.
"""

from __future__ import annotations

import decimal
import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import models

from distributor.errors import ValidationFailed

# Exact rating multiplies token counts (up to 10^15) by prices with 10 places; the default context
# of 28 significant digits could silently round such products, so money arithmetic runs at 60.
MONEY_CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_UP, traps=[decimal.InvalidOperation])
decimal.DefaultContext.prec = 60
decimal.getcontext().prec = 60

# NUMERIC(38, 18): 20 integer digits, 18 places. A usage charge (tokens x price/1M, price with up
# to 10 places) needs 16 places to stay exact; §2 asks for at least 10 on every intermediate.
AMOUNT_MAX_DIGITS = 38
AMOUNT_DECIMAL_PLACES = 18
EXACT_QUANTUM = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)
# Unit prices per 1M tokens carry up to 10 places (§2).
PRICE_MAX_DIGITS = 24
PRICE_DECIMAL_PLACES = 10

MINOR_UNITS = {"USD": 2, "CNY": 2, "EUR": 2, "GBP": 2, "HKD": 2, "SGD": 2, "JPY": 0}


def amount_field(**kwargs: Any) -> models.DecimalField:
    """An exact money amount column (its currency lives in a sibling column)."""
    return models.DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES, **kwargs)


def price_field(**kwargs: Any) -> models.DecimalField:
    """A unit price per one million tokens."""
    return models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, **kwargs)


def currency_field(**kwargs: Any) -> models.CharField:
    return models.CharField(max_length=3, **kwargs)


def check_currency(code: str) -> str:
    if code not in MINOR_UNITS:
        raise ValidationFailed(
            f"unknown currency {code!r}", details={"currency": code, "known": sorted(MINOR_UNITS)}
        )
    return code


def to_decimal(value: object, *, field: str = "amount") -> Decimal:
    """Parse an amount from a string or int (never a float) into an exact Decimal."""
    if isinstance(value, bool | float):
        raise ValidationFailed(
            f"{field} must be a decimal string, not {type(value).__name__}", details={field: value}
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except decimal.InvalidOperation as exc:
            raise ValidationFailed(
                f"{field} is not a decimal number: {value!r}", details={field: value}
            ) from exc
    else:
        raise ValidationFailed(f"{field} must be a decimal string", details={field: repr(value)})
    if not result.is_finite():
        raise ValidationFailed(f"{field} must be finite", details={field: str(value)})
    return result


@functools.lru_cache(maxsize=256)
def minor_quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS[check_currency(currency)])


def round_minor(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit: the one rounding rule of §2."""
    return amount.quantize(minor_quantum(currency), rounding=ROUND_HALF_UP, context=MONEY_CONTEXT)


def quantize_exact(amount: Decimal) -> Decimal:
    """Fit an exact intermediate (e.g. a cost at a paid/credit rate) into the storage scale."""
    return amount.quantize(EXACT_QUANTUM, rounding=ROUND_HALF_UP, context=MONEY_CONTEXT)


def zero(currency: str) -> Money:
    return Money(Decimal(0), check_currency(currency))


def normalize(amount: Decimal) -> str:
    """A decimal string without exponent or trailing zeros beyond what the value needs."""
    text = format(amount.normalize(context=MONEY_CONTEXT), "f")
    return text if text != "-0" else "0"


@dataclass(frozen=True, slots=True)
class Money:
    """An amount with its currency; arithmetic across currencies raises instead of converting."""

    amount: Decimal
    currency: str

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise ValidationFailed(
                f"cannot combine {self.currency} and {other.currency}",
                details={"currencies": [self.currency, other.currency]},
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def rounded(self) -> Money:
        return Money(round_minor(self.amount, self.currency), self.currency)

    def as_json(self) -> dict[str, str]:
        return {"amount": normalize(self.amount), "currency": self.currency}
