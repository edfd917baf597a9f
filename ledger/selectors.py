"""Reads of the books (§8): balances, the trial balance, the general ledger, the drift check, and
exchange rates.

Balances are signed in the account's normal side: a debit-normal account (cash, receivables,
expenses) reads debits - credits, a credit-normal one (deposits, payables, revenue, the allowance)
reads credits - debits, so a healthy balance is positive on both. Without `as_of` the cached
`AccountBalance` rows answer in one indexed query; with `as_of` the postings of entries that
occurred at or before it are summed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Case, DecimalField, F, Max, Q, QuerySet, Sum, Value, When, Window
from django.db.models.functions import Coalesce

from distributor.errors import NotFound, ValidationFailed
from distributor.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, check_currency
from ledger.models import AccountBalance, Book, ExchangeRate, LedgerAccount, Posting, Side

_ZERO = Value(
    Decimal(0), output_field=DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)
)
# Sums of many NUMERIC(38, 18) amounts may pass 38 digits; leave their precision open.
_SUM: DecimalField = DecimalField()


def _signed(debits: Any, credits: Any, normal_side: Any) -> Case:
    """debits - credits for a debit-normal account, credits - debits for a credit-normal one."""
    return Case(
        When(Q(**{normal_side: Side.DEBIT}), then=debits - credits),
        default=credits - debits,
        output_field=_SUM,
    )


def _ledger_account(*, book: Book, account_code: str) -> LedgerAccount:
    try:
        return LedgerAccount.objects.get(book=book, code=account_code)
    except LedgerAccount.DoesNotExist:
        raise NotFound(
            f"no ledger account {account_code!r} in book {book.code!r}",
            details={"book": book.code, "account_code": account_code},
        ) from None


def account_balance(
    *,
    book: Book,
    account_code: str,
    currency: str,
    counterparty: str | None = None,
    as_of: datetime | None = None,
) -> Decimal:
    """The balance of one ledger account in one currency, in its normal side; `counterparty=None`
    sums every counterparty of the account ("" is the rows with no counterparty)."""
    check_currency(currency)
    # The child rows are filtered directly, so PostgreSQL walks the (account, counterparty,
    # currency) indexes instead of joining every counterparty of a busy account (receivables with
    # thousands of customers) and filtering afterwards. One query when the account has rows.
    rows: QuerySet[Any]
    if as_of is None:
        rows = AccountBalance.objects.filter(
            ledger_account__book=book, ledger_account__code=account_code, currency=currency
        )
        if counterparty is not None:
            rows = rows.filter(counterparty=counterparty)
        totals = rows.aggregate(
            debits=Coalesce(Sum("debits"), _ZERO, output_field=_SUM),
            credits=Coalesce(Sum("credits"), _ZERO, output_field=_SUM),
            side=Max("ledger_account__normal_side"),
        )
    else:
        if as_of.tzinfo is None:
            raise ValidationFailed("as_of must carry a time zone", details={"as_of": str(as_of)})
        rows = Posting.objects.filter(
            ledger_account__book=book,
            ledger_account__code=account_code,
            currency=currency,
            entry__occurred_at__lte=as_of,
        )
        if counterparty is not None:
            rows = rows.filter(counterparty=counterparty)
        totals = rows.aggregate(
            debits=Coalesce(Sum("amount", filter=Q(side=Side.DEBIT)), _ZERO, output_field=_SUM),
            credits=Coalesce(Sum("amount", filter=Q(side=Side.CREDIT)), _ZERO, output_field=_SUM),
            side=Max("ledger_account__normal_side"),
        )
    side = totals["side"]
    if side is None:
        # No rows: a zero balance of a real account, or a code the book does not have.
        side = _ledger_account(book=book, account_code=account_code).normal_side
    debits, credits = totals["debits"], totals["credits"]
    return debits - credits if side == Side.DEBIT else credits - debits


def balances_by_counterparty(*, book: Book, account_code: str, currency: str) -> dict[str, Decimal]:
    """Non-zero balances of one account per counterparty, in its normal side: e.g. receivables per
    customer ("account:acme" -> 120.50)."""
    check_currency(currency)
    account = _ledger_account(book=book, account_code=account_code)
    rows = (
        AccountBalance.objects.filter(ledger_account=account, currency=currency)
        .annotate(balance=_signed(F("debits"), F("credits"), "ledger_account__normal_side"))
        .exclude(balance=0)
        .order_by("counterparty")
        .values_list("counterparty", "balance")
    )
    return dict(rows)


def trial_balance(*, book: Book, as_of: datetime | None = None) -> list[dict[str, Any]]:
    """Total debits and credits of the book per currency; `difference` (debits - credits) is zero
    in a sound book (§8). Currencies with no activity are absent."""
    rows: QuerySet[Any, dict[str, Any]]
    if as_of is None:
        rows = (
            AccountBalance.objects.filter(ledger_account__book=book)
            .values("currency")
            .annotate(total_debits=Sum("debits"), total_credits=Sum("credits"))
            .order_by("currency")
        )
    else:
        if as_of.tzinfo is None:
            raise ValidationFailed("as_of must carry a time zone", details={"as_of": str(as_of)})
        rows = (
            Posting.objects.filter(entry__book=book, entry__occurred_at__lte=as_of)
            .values("currency")
            .annotate(
                total_debits=Coalesce(Sum("amount", filter=Q(side=Side.DEBIT)), _ZERO, output_field=_SUM),
                total_credits=Coalesce(Sum("amount", filter=Q(side=Side.CREDIT)), _ZERO, output_field=_SUM),
            )
            .order_by("currency")
        )
    return [
        {
            "currency": row["currency"],
            "debits": row["total_debits"],
            "credits": row["total_credits"],
            "difference": row["total_debits"] - row["total_credits"],
        }
        for row in rows
    ]


def general_ledger(
    *, book: Book, account_code: str, counterparty: str | None = None, currency: str | None = None
) -> QuerySet[Posting]:
    """The lines of one account in date order, each Posting annotated with `occurred_at`,
    `description`, `idempotency_key` and `running_balance` (normal side, per currency: a running
    balance never adds two currencies).

    The running balance is a window over the whole selection: slice the result for paging, but do
    not filter it further (a later filter would drop lines from the window's sum).
    """
    account = _ledger_account(book=book, account_code=account_code)
    lines = Posting.objects.filter(ledger_account=account)
    if counterparty is not None:
        lines = lines.filter(counterparty=counterparty)
    if currency is not None:
        lines = lines.filter(currency=check_currency(currency))
    sign = 1 if account.normal_side == Side.DEBIT else -1
    signed_amount = Case(
        When(side=Side.DEBIT, then=F("amount") * sign),
        default=F("amount") * -sign,
        output_field=_SUM,
    )
    order = [F("entry__occurred_at").asc(), F("entry_id").asc(), F("id").asc()]
    return (
        lines.select_related("entry")
        .annotate(
            occurred_at=F("entry__occurred_at"),
            description=F("entry__description"),
            idempotency_key=F("entry__idempotency_key"),
            running_balance=Window(Sum(signed_amount), partition_by=[F("currency")], order_by=order),
        )
        .order_by(*order)
    )


_DRIFT_SQL = """
WITH recomputed AS (
    SELECT p.ledger_account_id, p.counterparty, p.currency,
           sum(CASE WHEN p.side = 'debit' THEN p.amount ELSE 0 END) AS debits,
           sum(CASE WHEN p.side = 'credit' THEN p.amount ELSE 0 END) AS credits
    FROM ledger_posting p
    JOIN ledger_ledgeraccount la ON la.id = p.ledger_account_id
    WHERE %(book_id)s::bigint IS NULL OR la.book_id = %(book_id)s::bigint
    GROUP BY p.ledger_account_id, p.counterparty, p.currency
), cached AS (
    SELECT b.ledger_account_id, b.counterparty, b.currency, b.debits, b.credits
    FROM ledger_accountbalance b
    JOIN ledger_ledgeraccount la ON la.id = b.ledger_account_id
    WHERE %(book_id)s::bigint IS NULL OR la.book_id = %(book_id)s::bigint
)
SELECT bk.code, la.code, d.counterparty, d.currency,
       coalesce(r.debits, 0), coalesce(r.credits, 0), c.debits, c.credits
FROM recomputed r
FULL OUTER JOIN cached c USING (ledger_account_id, counterparty, currency)
CROSS JOIN LATERAL (
    SELECT coalesce(r.ledger_account_id, c.ledger_account_id) AS ledger_account_id,
           coalesce(r.counterparty, c.counterparty) AS counterparty,
           coalesce(r.currency, c.currency) AS currency
) d
JOIN ledger_ledgeraccount la ON la.id = d.ledger_account_id
JOIN ledger_book bk ON bk.id = la.book_id
WHERE coalesce(r.debits, 0) <> coalesce(c.debits, 0) OR coalesce(r.credits, 0) <> coalesce(c.credits, 0)
ORDER BY bk.code, la.code, d.counterparty, d.currency
"""


_DRIFT_COLUMNS = (
    "book",
    "account_code",
    "counterparty",
    "currency",
    "expected_debits",
    "expected_credits",
    "cached_debits",
    "cached_credits",
)


def balance_drift(*, book: Book | None = None) -> list[dict[str, Any]]:
    """Every cached balance row that differs from the sum of its postings, and every posted
    (account, counterparty, currency) with no balance row (`cached_*` None). Empty = sound.

    One pass over the postings, grouped; run it off-peak on a large book.
    """
    with connection.cursor() as cur:
        cur.execute(_DRIFT_SQL, {"book_id": book.pk if book is not None else None})
        return [dict(zip(_DRIFT_COLUMNS, row, strict=True)) for row in cur.fetchall()]


def exchange_rate(*, base: str, quote: str, at: datetime) -> ExchangeRate:
    """The `base`/`quote` rate in force at `at`: the latest one effective at or before it.

    The same currency on both sides answers an unsaved rate of 1 (pk None), so a report converting
    every currency of a book into its base needs no special case.
    """
    check_currency(base)
    check_currency(quote)
    if at.tzinfo is None:
        raise ValidationFailed("at must carry a time zone", details={"at": str(at)})
    if base == quote:
        return ExchangeRate(base=base, quote=quote, rate=Decimal(1), effective_at=at)
    found = (
        ExchangeRate.objects.filter(base=base, quote=quote, effective_at__lte=at)
        .order_by("-effective_at")
        .first()
    )
    if found is None:
        raise NotFound(
            f"no {base}/{quote} exchange rate in force at {at.isoformat()}; finance must enter one",
            details={"base": base, "quote": quote, "at": at.isoformat()},
        )
    return found
