"""Prepaid statements (§7, §11.1): per prepaid account and month, the wallet's opening balance,
top-ups, usage drawdowns and closing balance, read from the ledger (customer deposits for
"account:<code>" in the book that bills it), with usage split by model from the prepaid rollups.

Figures are stored exact and shown rounded. Ledger entries are dated when money moved, so a late
event's drawdown (posted when it arrived) appears on the statement of the month it arrived in
(§11.4). A month with zero opening balance and no activity draws no statement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from distributor.money import normalize
from ledger.models import Book, Posting, Side
from settlement.models import Statement, UsageRollup
from settlement.services.invoicing import Period, book_zone


def statements_draw(*, book: Book, accounts: Sequence[Any], period: Period, now: datetime) -> int:
    """Draw the month's statement of each of these prepaid accounts that has none yet, with two
    set-based queries for the whole chunk. Returns how many were drawn."""
    have = set(
        Statement.objects.filter(account__in=accounts, period_start=period.start).values_list(
            "account_id", flat=True
        )
    )
    todo = {f"account:{a.code}": a for a in accounts if a.pk not in have}
    if not todo:
        return 0
    tz = book_zone(book)
    start, end = period.starts_at(tz), period.ends_at(tz)
    before = Q(entry__occurred_at__lt=start)
    within = Q(entry__occurred_at__gte=start)
    credits, debits = Q(side=Side.CREDIT), Q(side=Side.DEBIT)
    figures = {
        (row["counterparty"], row["currency"]): row
        for row in Posting.objects.filter(
            entry__book=book,
            ledger_account__code="customer_deposits",
            counterparty__in=list(todo),
            entry__occurred_at__lt=end,
        )
        .values("counterparty", "currency")
        .annotate(
            opening_credits=Sum("amount", filter=before & credits),
            opening_debits=Sum("amount", filter=before & debits),
            topups=Sum("amount", filter=within & credits),
            usage=Sum("amount", filter=within & debits),
        )
    }
    by_model: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for payer, model_code, amount in (
        UsageRollup.objects.filter(
            payer_account_id__in=[a.pk for a in todo.values()],
            prepaid=True,
            day__gte=period.start,
            day__lte=period.end,
        )
        .values("payer_account_id", "model_code")
        .annotate(total=Sum("amount"))
        .values_list("payer_account_id", "model_code", "total")
        .order_by("payer_account_id", "model_code")
    ):
        by_model[payer][model_code] = amount
    drawn: list[Statement] = []
    for counterparty, account in todo.items():
        row = figures.get((counterparty, account.currency), {})
        opening = (row.get("opening_credits") or Decimal(0)) - (row.get("opening_debits") or Decimal(0))
        topups = row.get("topups") or Decimal(0)
        usage = row.get("usage") or Decimal(0)
        if opening == 0 and topups == 0 and usage == 0:
            continue
        drawn.append(
            Statement(
                account=account,
                book=book,
                period_start=period.start,
                period_end=period.end,
                label=period.label,
                currency=account.currency,
                opening=opening,
                topups=topups,
                usage=usage,
                closing=opening + topups - usage,
                usage_by_model={code: normalize(v) for code, v in by_model.get(account.pk, {}).items()},
                drawn_at=now,
            )
        )
    Statement.objects.bulk_create(drawn, ignore_conflicts=True)
    return len(drawn)
