"""Reads of usage: rollups per payer, unbilled usage, prepaid shortfalls not yet invoiced, upstream
cost, batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncMonth

from ledger.models import Book, Posting, Side
from settlement.models import InvoiceLine, InvoiceLineKind, UpstreamCostRollup, UsageBatch, UsageRollup

# The source_type of the prepaid drawdown entries (settlement.services.rating._drawdowns_post).
DRAWDOWN_SOURCE = "usage_batch"


def usage_rollups(
    *, payer_account_id: int, day_from: date | None = None, day_to: date | None = None
) -> QuerySet[UsageRollup]:
    """One payer's rated usage (what it owes its parent), optionally within [day_from, day_to)."""
    qs = UsageRollup.objects.filter(payer_account_id=payer_account_id).select_related("payee_book")
    if day_from is not None:
        qs = qs.filter(day__gte=day_from)
    if day_to is not None:
        qs = qs.filter(day__lt=day_to)
    return qs


# §11.6: unbilled = what was rated - what invoices that are no longer drafts bill. Both sides are
# small per payer (a row per month; ~40 rows per invoice), never the ~1,200 rollup rows of a month.
_UNBILLED_BY_PAYER = """
    SELECT payer, sum(amount) FROM (
        SELECT payer_account_id AS payer, amount FROM settlement_usageaccrual
        WHERE payer_account_id = ANY(%(ids)s) AND month <= %(through)s
        UNION ALL
        SELECT u.payer_account_id, -u.amount
        FROM settlement_invoiceusage u JOIN settlement_invoice i ON i.id = u.invoice_id
        WHERE u.payer_account_id = ANY(%(ids)s) AND i.status <> 'draft' AND u.month <= %(through)s
    ) AS moves
    GROUP BY payer
"""


def unbilled_by_payer(*, payer_account_ids: Iterable[int], through: date = date.max) -> dict[int, Decimal]:
    """§11.6: exact postpaid usage charges not yet on an issued invoice, per payer (absent: none),
    of the months starting up to `through` (a period's last day: its months and all before)."""
    ids = sorted(set(payer_account_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_UNBILLED_BY_PAYER, {"ids": ids, "through": through})
        return {payer: amount for payer, amount in cursor if amount}


def unbilled_usage(*, payer_account_id: int) -> Decimal:
    """§11.6: exact postpaid usage charges of one payer not yet on an issued invoice."""
    return unbilled_by_payer(payer_account_ids=[payer_account_id]).get(payer_account_id, Decimal(0))


def upstream_costs(
    *, book_id: int, day_from: date | None = None, day_to: date | None = None
) -> QuerySet[UpstreamCostRollup]:
    qs = UpstreamCostRollup.objects.filter(book_id=book_id)
    if day_from is not None:
        qs = qs.filter(day__gte=day_from)
    if day_to is not None:
        qs = qs.filter(day__lt=day_to)
    return qs


def ingestion_totals() -> dict[str, int]:
    """Accepted, duplicate and rejected events over all batches (the scenario report's figure)."""
    totals = UsageBatch.objects.aggregate(
        accepted=Sum("accepted"), duplicates=Sum("duplicates"), rejected=Sum("rejected")
    )
    return {k: int(v or 0) for k, v in totals.items()}


@dataclass(frozen=True, slots=True)
class MarginRow:
    """A book's revenue and cost of one model for the month the usage happened in (exact)."""

    book: str
    period: str
    model: str
    currency: str
    revenue: Decimal
    cost: Decimal

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def negative(self) -> bool:
        return self.margin < 0


def margins(*, book: Any, day_from: date | None = None, day_to: date | None = None) -> list[MarginRow]:
    """Per month, model and currency: what the book bills its accounts for usage (revenue) against
    what that usage costs it: the providers' cost for the root, the parent's price for a
    distributor's own book. Within [day_from, day_to) when given; rows ordered by month and model."""
    from accounts.models import Account

    revenue = UsageRollup.objects.filter(payee_book=book)
    owner = Account.objects.filter(own_book=book).only("pk").first()
    cost_rows: QuerySet[Any]
    if owner is None:
        cost_rows = UpstreamCostRollup.objects.filter(book=book).annotate(month=TruncMonth("day"))
        cost_field = "cost"
    else:
        cost_rows = UsageRollup.objects.filter(payer_account_id=owner.pk).annotate(month=TruncMonth("day"))
        cost_field = "amount"
    if day_from is not None:
        revenue, cost_rows = revenue.filter(day__gte=day_from), cost_rows.filter(day__gte=day_from)
    if day_to is not None:
        revenue, cost_rows = revenue.filter(day__lt=day_to), cost_rows.filter(day__lt=day_to)
    figures: dict[tuple[date, str, str], list[Decimal]] = {}
    for row in (
        revenue.annotate(month=TruncMonth("day"))
        .values("month", "model_code", "currency")
        .annotate(total=Sum("amount"))
    ):
        key = (row["month"], row["model_code"], row["currency"])
        figures.setdefault(key, [Decimal(0), Decimal(0)])[0] += row["total"]
    for row in cost_rows.values("month", "model_code", "currency").annotate(total=Sum(cost_field)):
        key = (row["month"], row["model_code"], row["currency"])
        figures.setdefault(key, [Decimal(0), Decimal(0)])[1] += row["total"]
    return [
        MarginRow(
            book=book.code,
            period=f"{month:%Y-%m}",
            model=model,
            currency=currency,
            revenue=amounts[0],
            cost=amounts[1],
        )
        for (month, model, currency), amounts in sorted(figures.items())
        if amounts[0] or amounts[1]
    ]


def prepaid_shortfalls_unbilled(
    *, book: Book, accounts: Sequence[Any], before: datetime
) -> dict[int, Decimal]:
    """Per account (id): the exact usage-drawdown receivables booked in `book` before `before` that
    no shortfall invoice has billed. Accounts with nothing to bill are left out. Two queries."""
    by_counterparty = {a.counterparty: a for a in accounts}
    booked = {
        counterparty: (debits or Decimal(0)) - (credits or Decimal(0))
        for counterparty, debits, credits in Posting.objects.filter(
            entry__book=book,
            entry__source_type=DRAWDOWN_SOURCE,
            entry__occurred_at__lt=before,
            ledger_account__code="receivables",
            counterparty__in=list(by_counterparty),
        )
        .values("counterparty")
        .annotate(
            debits=Sum("amount", filter=Q(side=Side.DEBIT)), credits=Sum("amount", filter=Q(side=Side.CREDIT))
        )
        .values_list("counterparty", "debits", "credits")
    }
    billed = dict(
        InvoiceLine.objects.filter(
            kind=InvoiceLineKind.WALLET_SHORTFALL, invoice__account__in=[a.pk for a in accounts]
        )
        .values("invoice__account_id")
        .annotate(s=Sum("exact_amount"))
        .values_list("invoice__account_id", "s")
    )
    unbilled: dict[int, Decimal] = {}
    for counterparty, amount in booked.items():
        account = by_counterparty[counterparty]
        left = amount - (billed.get(account.pk) or Decimal(0))
        if left > 0:
            unbilled[account.pk] = left
    return unbilled
