"""Reads of usage: rollups per payer, unbilled usage, upstream cost, batches."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db.models import F, QuerySet, Sum

from settlement.models import UpstreamCostRollup, UsageBatch, UsageRollup


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


def unbilled_usage(*, payer_account_id: int) -> Decimal:
    """§11.6: exact postpaid usage charges not yet on an issued invoice."""
    total = UsageRollup.objects.filter(payer_account_id=payer_account_id, prepaid=False).aggregate(
        open=Sum(F("amount") - F("billed_amount"))
    )["open"]
    return total or Decimal(0)


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
