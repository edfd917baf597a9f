"""Readers of the upstream side: list prices in force, prepaid credit left at cost, what the book
owes its providers, and each provider's days of cover (§3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Q, QuerySet, Sum

from distributor.errors import NotFound, ValidationFailed
from distributor.money import MONEY_CONTEXT
from ledger.models import AccountBalance, Book
from procurement.models import (
    TOKEN_CLASSES,
    ListPriceVersion,
    Provider,
    ProviderModel,
    QuotaPurchase,
    UpstreamCharge,
    UpstreamStatementLine,
)
from procurement.services import prepaid_cost_left

BURN_WINDOW_DAYS = 7


def list_price_version(*, model_code: str, at: datetime) -> ListPriceVersion:
    """The version in force at `at`: the one with the greatest effective_from <= at."""
    version = (
        ListPriceVersion.objects.filter(model__code=model_code, effective_from__lte=at)
        .select_related("model")
        .order_by("-effective_from")
        .first()
    )
    if version is not None:
        return version
    first = ListPriceVersion.objects.filter(model__code=model_code).order_by("effective_from").first()
    if first is None:
        if not ProviderModel.objects.filter(code=model_code).exists():
            raise NotFound(f"unknown model {model_code!r}", details={"model": model_code})
        raise NotFound(f"model {model_code!r} has no list price yet", details={"model": model_code})
    raise NotFound(
        f"model {model_code!r} has no list price at {at.isoformat()}: its first price starts "
        f"{first.effective_from.isoformat()}",
        details={"model": model_code, "at": at.isoformat(), "first": first.effective_from.isoformat()},
    )


def list_price(*, model_code: str, token_class: str, at: datetime) -> Decimal:
    """The list price per 1M tokens of one class at `at`."""
    if token_class not in TOKEN_CLASSES:
        raise ValidationFailed(
            f"unknown token class {token_class!r}",
            details={"token_class": token_class, "known": list(TOKEN_CLASSES)},
        )
    version = list_price_version(model_code=model_code, at=at)
    price: Decimal | None = getattr(version, token_class)
    if price is None:
        raise NotFound(
            f"model {model_code!r} has no {token_class} price (version from "
            f"{version.effective_from.isoformat()})",
            details={"model": model_code, "token_class": token_class, "version": version.pk},
        )
    return price


def purchases_for(*, book: Book, provider: Provider | None = None) -> QuerySet[QuotaPurchase]:
    qs = QuotaPurchase.objects.filter(book=book).select_related("provider")
    if provider is not None:
        qs = qs.filter(provider=provider)
    return qs.order_by("-purchased_at", "-id")


def upstream_prepaid_at_cost(*, book: Book, currency: str, as_of: datetime | None = None) -> Decimal:
    """Prepaid credit left at cost (paid - cost of what was drawn), summed over the book's purchases.
    It equals the ledger's upstream_prepayments balance (§8). With `as_of`: purchases bought by then,
    less draws for usage up to then, less those whose expiry (at or before as_of) was booked."""
    purchases = QuotaPurchase.objects.filter(book=book, currency=currency)
    if as_of is None:
        return sum((prepaid_cost_left(p) for p in purchases.filter(remaining_credit__gt=0)), Decimal(0))
    rows = (
        purchases.filter(purchased_at__lte=as_of)
        .exclude(expired_at__isnull=False, expires_at__lte=as_of)
        .annotate(drawn_cost=Sum("draws__cost_amount", filter=Q(draws__charge__at__lte=as_of)))
    )
    return sum((p.paid - (p.drawn_cost or Decimal(0)) for p in rows), Decimal(0))


def upstream_payables(*, book: Book, currency: str, provider: Provider | None = None) -> Decimal:
    """What the book owes its supply side in `currency` (the upstream_payables ledger balance,
    credit-normal): all counterparties, or one provider's."""
    qs = AccountBalance.objects.filter(
        ledger_account__book=book, ledger_account__code="upstream_payables", currency=currency
    )
    if provider is not None:
        qs = qs.filter(counterparty=provider.counterparty)
    totals = qs.aggregate(debits=Sum("debits"), credits=Sum("credits"))
    return (totals["credits"] or Decimal(0)) - (totals["debits"] or Decimal(0))


@dataclass(frozen=True, slots=True)
class ProviderCover:
    """How long a provider's prepaid credit lasts at the recent rate of usage."""

    provider_code: str
    currency: str
    remaining_list: Decimal
    remaining_cost: Decimal
    burn_7d_list: Decimal
    daily_burn_list: Decimal
    days_of_cover: Decimal | None
    threshold_days: int
    low_cover: bool


def provider_cover(
    *, book: Book, provider: Provider, now: datetime, threshold_days: int | None = None
) -> ProviderCover:
    """Remaining credit usable at `now` (list and cost), the list-price usage of the 7 days before
    `now`, per day, and days of cover = remaining / daily burn (2 places, None with no burn).
    Low cover: fewer days than the threshold (the provider's `low_cover_days` by default)."""
    threshold = provider.low_cover_days if threshold_days is None else threshold_days
    usable = QuotaPurchase.objects.filter(
        book=book,
        provider=provider,
        currency=provider.currency,
        remaining_credit__gt=0,
        purchased_at__lte=now,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    remaining_list = Decimal(0)
    remaining_cost = Decimal(0)
    for purchase in usable:
        remaining_list += purchase.remaining_credit
        remaining_cost += prepaid_cost_left(purchase)
    burn = UpstreamCharge.objects.filter(
        book=book,
        provider=provider,
        currency=provider.currency,
        at__gte=now - timedelta(days=BURN_WINDOW_DAYS),
        at__lt=now,
    ).aggregate(total=Sum("list_charge"))["total"] or Decimal(0)
    daily = MONEY_CONTEXT.divide(burn, Decimal(BURN_WINDOW_DAYS))
    days: Decimal | None = None
    if burn > 0:
        days = MONEY_CONTEXT.divide(remaining_list, daily).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return ProviderCover(
        provider_code=provider.code,
        currency=provider.currency,
        remaining_list=remaining_list,
        remaining_cost=remaining_cost,
        burn_7d_list=burn,
        daily_burn_list=daily,
        days_of_cover=days,
        threshold_days=threshold,
        low_cover=days is not None and days < threshold,
    )


def providers_cover(*, book: Book, now: datetime) -> list[ProviderCover]:
    """Cover of every provider the book has bought from or drawn on, for the risk dashboard."""
    ids = set(QuotaPurchase.objects.filter(book=book).values_list("provider_id", flat=True))
    ids |= set(UpstreamCharge.objects.filter(book=book).values_list("provider_id", flat=True))
    return [
        provider_cover(book=book, provider=p, now=now)
        for p in Provider.objects.filter(pk__in=ids).order_by("code")
    ]


@dataclass(frozen=True, slots=True)
class VarianceRow:
    """One day and model: what the provider's statement says against what we metered.
    Variances are statement - metered; `statement_amount` None = the statement has no such line."""

    day: date
    model: str
    statement_tokens: dict[str, int]
    metered_tokens: dict[str, int]
    statement_amount: Decimal | None
    metered_amount: Decimal

    @property
    def token_variance(self) -> dict[str, int]:
        return {c: self.statement_tokens[c] - self.metered_tokens[c] for c in TOKEN_CLASSES}

    @property
    def amount_variance(self) -> Decimal:
        return (self.statement_amount or Decimal(0)) - self.metered_amount

    @property
    def matches(self) -> bool:
        return (
            self.statement_amount is not None
            and not self.amount_variance
            and not any(self.token_variance.values())
        )


def upstream_variance(
    *, book: Book, provider: Provider, day_from: date | None = None, day_to: date | None = None
) -> list[VarianceRow]:
    """Per day (in the book's zone) and model of the provider, within [day_from, day_to]: the
    provider's statement (the latest import wins where statements overlap) against our metering
    (tokens per class and the list-price charge of the upstream cost rollups)."""
    from settlement.models import UpstreamCostRollup

    statement_lines = UpstreamStatementLine.objects.filter(
        statement__book=book, statement__provider=provider
    ).order_by("statement__imported_at", "statement_id")
    metered = UpstreamCostRollup.objects.filter(book=book, provider_id=provider.pk)
    if day_from is not None:
        statement_lines, metered = (
            statement_lines.filter(day__gte=day_from),
            metered.filter(day__gte=day_from),
        )
    if day_to is not None:
        statement_lines, metered = statement_lines.filter(day__lte=day_to), metered.filter(day__lte=day_to)
    zero = dict.fromkeys(TOKEN_CLASSES, 0)
    stated: dict[tuple[date, str], tuple[dict[str, int], Decimal]] = {}
    for line in statement_lines:
        tokens = {c: getattr(line, f"{c}_tokens") for c in TOKEN_CLASSES}
        stated[(line.day, line.model_code)] = (tokens, line.amount)  # later imports overwrite
    ours: dict[tuple[date, str], tuple[dict[str, int], Decimal]] = {}
    for row in metered.values("day", "model_code").annotate(
        input=Sum("input_tokens"),
        cached_input=Sum("cached_input_tokens"),
        cache_write=Sum("cache_write_tokens"),
        output=Sum("output_tokens"),
        charge=Sum("list_charge"),
    ):
        ours[(row["day"], row["model_code"])] = ({c: row[c] for c in TOKEN_CLASSES}, row["charge"])
    rows = []
    for key in sorted(stated.keys() | ours.keys()):
        stated_tokens, stated_amount = stated.get(key, (zero, None))
        our_tokens, our_amount = ours.get(key, (zero, Decimal(0)))
        rows.append(
            VarianceRow(
                day=key[0],
                model=key[1],
                statement_tokens=dict(stated_tokens),
                metered_tokens=dict(our_tokens),
                statement_amount=stated_amount,
                metered_amount=our_amount,
            )
        )
    return rows
