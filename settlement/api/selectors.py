"""Reads behind the reseller API's billing endpoints: balances and usage summaries of one account
already found inside the caller's scope (accounts.api.scoping). Set-based, from rollups and the
ledger's balances, never from raw usage events."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import F, Sum
from django.db.models.functions import TruncMonth

from accounts.models import Account, Terms
from accounts.selectors import wallet_balance
from settlement.models import Invoice, InvoiceStatus, UsageRollup
from settlement.selectors import unbilled_usage
from settlement.services.credit_control import credit_states_compute
from settlement.services.payments import credit_balance

USAGE_GROUPS = ("period", "day", "model", "token_class", "account")


def account_balances(*, account: Account) -> dict[str, Decimal | None]:
    """Wallet (prepaid), open receivables, unbilled usage, credit balance and available credit."""
    open_amount = Invoice.objects.filter(
        account=account, status__in=(InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID)
    ).aggregate(open=Sum(F("total") - F("paid_amount") - F("credited_amount") - F("written_off_amount")))[
        "open"
    ] or Decimal(0)
    unbilled = unbilled_usage(payer_account_id=account.pk)
    return {
        "wallet": wallet_balance(account=account) if account.terms == Terms.PREPAID else None,
        "open_receivables": open_amount,
        "unbilled": unbilled,
        "credit_balance": credit_balance(account=account),
        "available": credit_states_compute(account_ids=[account.pk])[account.pk].available,
    }


def usage_summary(
    *, account: Account, group_by: list[str], day_from: date | None, day_to: date | None
) -> list[dict[str, Any]]:
    """Tokens and exact amounts, grouped. Without `account` in `group_by`: what `account` owes its
    parent (its hop of the cascade, which covers its whole subtree's calls). With `account`: what
    each of its direct children owes it (its revenue per child)."""
    if "account" in group_by:
        children = dict(Account.objects.filter(parent=account).values_list("pk", "code"))
        rows = UsageRollup.objects.filter(payer_account_id__in=list(children))
    else:
        children = {}
        rows = UsageRollup.objects.filter(payer_account_id=account.pk)
    if day_from is not None:
        rows = rows.filter(day__gte=day_from)
    if day_to is not None:
        rows = rows.filter(day__lte=day_to)
    columns = {
        "period": TruncMonth("day"),
        "day": F("day"),
        "model": F("model_code"),
        "token_class": F("token_class"),
        "account": F("payer_account_id"),
    }
    wanted = [g for g in USAGE_GROUPS if g in group_by]
    grouped = (
        rows.annotate(**{f"g_{g}": columns[g] for g in wanted})
        .values(*[f"g_{g}" for g in wanted])
        .annotate(tokens=Sum("tokens"), amount=Sum("amount"))
        .order_by(*[f"g_{g}" for g in wanted])
    )
    answer: list[dict[str, Any]] = []
    for row in grouped:
        period = row.get("g_period")
        day = row.get("g_day")
        answer.append(
            {
                "period": period.strftime("%Y-%m") if period is not None else None,
                "day": day.isoformat() if day is not None else None,
                "model": row.get("g_model"),
                "token_class": row.get("g_token_class"),
                "account": children.get(row["g_account"]) if "g_account" in row else None,
                "tokens": row["tokens"] or 0,
                "amount": row["amount"] or Decimal(0),
            }
        )
    return answer
