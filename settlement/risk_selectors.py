"""Reads of risk (§9, §11.6, §11.7, §11.11): prepayment exposure and the net funding position per
book and currency, receivables aging, the allowance, DSO, the provision matrix in force, and the
exposure history the dashboards chart.

Everything answers "as of" a moment. Ledger figures (prepayments, receivables, deposits, payables,
the allowance) are summed from the postings of entries dated at or before it; aging rebuilds each
invoice's open amount from its dated allocations, credit notes, write-offs and recoveries. Unbilled
usage is the one exception: it is the usage of days up to `as_of` (book's zone) not on an invoice
issued *now* (rollups do not remember when they were billed), so a past `as_of` before an issue
shows that usage as billed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any

from django.db import connection
from django.db.models import DecimalField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from distributor.errors import ValidationFailed
from distributor.money import check_currency
from ledger.models import Book, LedgerAccount, Posting, Side
from ledger.selectors import account_balance
from settlement.models import (
    CreditNote,
    ExposureSnapshot,
    Invoice,
    InvoiceStatus,
    PaymentAllocation,
    ProvisionMatrix,
    WriteOff,
    WriteOffRecovery,
)
from settlement.services.invoicing import book_zone

DEFAULT_EDGES: tuple[int, ...] = (0, 30, 60, 90, 180)
CURRENT = "current"
TOP_CUSTOMERS = 20
DSO_WINDOW_DAYS = 90
_SUM: DecimalField = DecimalField()
_ZERO = Value(Decimal(0), output_field=_SUM)


# --- buckets --------------------------------------------------------------------------------------


def edges_check(edges: Sequence[int]) -> tuple[int, ...]:
    """Bucket edges: whole days, the first 0 (`current` = not yet past due), strictly rising."""
    values = tuple(edges)
    if not values or values[0] != 0:
        raise ValidationFailed(
            "aging edges must start at 0 (the `current` bucket)", details={"edges": values}
        )
    if any(not isinstance(e, int) or isinstance(e, bool) for e in values):
        raise ValidationFailed("aging edges are whole days", details={"edges": [str(e) for e in values]})
    if any(b <= a for a, b in pairwise(values)):
        raise ValidationFailed("aging edges must rise strictly", details={"edges": values})
    return values


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """(0, 30, 60, 90, 180) -> current, 1-30, 31-60, 61-90, 91-180, 180+ (§9, §11.11)."""
    values = edges_check(edges)
    labels = [CURRENT]
    labels += [f"{low + 1}-{high}" for low, high in pairwise(values)]
    labels.append(f"{values[-1]}+")
    return labels


def bucket_of(days_past_due: int, edges: Sequence[int]) -> str:
    """The bucket of an invoice `days_past_due` days late: <= 0 is current, an edge belongs to the
    bucket it closes (180 is in 91-180), beyond the last edge is `<last>+`."""
    labels = bucket_labels(edges)
    for i, edge in enumerate(edges):
        if days_past_due <= edge:
            return labels[i]
    return labels[-1]


def matrix_in_force(*, book: Book, on: date) -> ProvisionMatrix | None:
    """The provision matrix version in force on a date of the book's zone: the latest
    `effective_from` on or before it, the highest version on a tie."""
    return (
        ProvisionMatrix.objects.filter(book=book, effective_from__lte=on)
        .prefetch_related("rates")
        .order_by("-effective_from", "-version")
        .first()
    )


def aging_edges(*, book: Book, on: date) -> tuple[int, ...]:
    """The book's bucket edges: those of its provision matrix in force, else the default."""
    matrix = matrix_in_force(book=book, on=on)
    return tuple(matrix.edges) if matrix is not None else DEFAULT_EDGES


def _local_date(book: Book, moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValidationFailed("as_of must carry a time zone", details={"as_of": str(moment)})
    return moment.astimezone(book_zone(book)).date()


# --- aging ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """An invoice's open amount as of a moment, and how late it was then."""

    invoice_id: int
    number: str
    account: str
    due_date: date
    days_past_due: int
    bucket: str
    open: Decimal


@dataclass(frozen=True, slots=True)
class Aging:
    """Open receivables by bucket, in total and per account code (every bucket present, zeros too)."""

    book: str
    currency: str
    as_of: datetime
    edges: tuple[int, ...]
    buckets: dict[str, Decimal]
    per_account: dict[str, dict[str, Decimal]]
    invoices: list[OpenInvoice] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), Decimal(0))


def _summed(qs: QuerySet[Any], group: str, amount: str = "amount") -> Coalesce:
    """Σ `amount` of the rows of `qs` that belong to the outer invoice, 0 when none."""
    inner = qs.order_by().values(group).annotate(s=Sum(amount)).values("s")[:1]
    return Coalesce(Subquery(inner, output_field=_SUM), _ZERO, output_field=_SUM)


def open_invoices_as_of(*, book: Book, currency: str, as_of: datetime) -> list[tuple[Invoice, Decimal]]:
    """Invoices of the book issued by `as_of` with their open amount then: total less payments
    allocated, credit notes issued and write-offs made by then, plus recoveries by then."""
    check_currency(currency)
    rows = (
        Invoice.objects.filter(issuer_book=book, currency=currency, issued_at__lte=as_of)
        .exclude(status=InvoiceStatus.DRAFT)
        .select_related("account")
        .annotate(
            paid_then=_summed(
                PaymentAllocation.objects.filter(invoice=OuterRef("pk"), allocated_at__lte=as_of), "invoice"
            ),
            credited_then=_summed(
                CreditNote.objects.filter(invoice=OuterRef("pk"), issued_at__lte=as_of), "invoice", "total"
            ),
            written_off_then=_summed(
                WriteOff.objects.filter(invoice=OuterRef("pk"), at__lte=as_of), "invoice"
            ),
            recovered_then=_summed(
                WriteOffRecovery.objects.filter(write_off__invoice=OuterRef("pk"), at__lte=as_of),
                "write_off",
            ),
        )
        .order_by("due_date", "number")
    )
    found: list[tuple[Invoice, Decimal]] = []
    for invoice in rows:
        owed = (
            invoice.total
            - invoice.paid_then  # type: ignore[attr-defined]
            - invoice.credited_then  # type: ignore[attr-defined]
            - invoice.written_off_then  # type: ignore[attr-defined]
            + invoice.recovered_then  # type: ignore[attr-defined]
        )
        if owed != 0:
            found.append((invoice, owed))
    return found


def aging(*, book: Book, currency: str, as_of: datetime) -> Aging:
    """Open receivables by days past due as of `as_of` (§9): calendar dates in the book's zone from
    the due date to as_of's local date; buckets from the book's configured edges (§11.11)."""
    today = _local_date(book, as_of)
    edges = aging_edges(book=book, on=today)
    return aging_by_edges(book=book, currency=currency, as_of=as_of, edges=edges)


def aging_by_edges(*, book: Book, currency: str, as_of: datetime, edges: tuple[int, ...]) -> Aging:
    today = _local_date(book, as_of)
    labels = bucket_labels(edges)
    buckets = {label: Decimal(0) for label in labels}
    per_account: dict[str, dict[str, Decimal]] = {}
    listed = []
    for invoice, owed in open_invoices_as_of(book=book, currency=currency, as_of=as_of):
        days = (today - invoice.due_date).days
        label = bucket_of(days, edges)
        buckets[label] += owed
        code = invoice.account.code
        row = per_account.setdefault(code, {name: Decimal(0) for name in labels})
        row[label] += owed
        listed.append(
            OpenInvoice(
                invoice_id=invoice.pk,
                number=invoice.number or "",
                account=code,
                due_date=invoice.due_date,
                days_past_due=days,
                bucket=label,
                open=owed,
            )
        )
    return Aging(
        book=book.code,
        currency=currency,
        as_of=as_of,
        edges=edges,
        buckets=buckets,
        per_account=per_account,
        invoices=listed,
    )


# --- the allowance and DSO ------------------------------------------------------------------------


def allowance_balance(*, book: Book, currency: str, as_of: datetime | None = None) -> Decimal:
    """The allowance for doubtful accounts as a positive amount (it is credit-normal, §11.10)."""
    return account_balance(book=book, account_code="allowance", currency=currency, as_of=as_of)


def dso(*, book: Book, currency: str, as_of: datetime) -> Decimal | None:
    """Days sales outstanding, trailing 90 days: receivables as of `as_of` / invoiced in the 90 days
    before it x 90, to 2 places (half-up). None when nothing was invoiced in the window."""
    receivables = account_balance(book=book, account_code="receivables", currency=currency, as_of=as_of)
    sales = Invoice.objects.filter(
        issuer_book=book,
        currency=currency,
        issued_at__gt=as_of - timedelta(days=DSO_WINDOW_DAYS),
        issued_at__lte=as_of,
    ).aggregate(s=Sum("total"))["s"] or Decimal(0)
    if sales <= 0:
        return None
    days = receivables * DSO_WINDOW_DAYS / sales
    return days.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --- exposure -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderExposure:
    """One supplier of the book: a provider (root book) or the parent (a distributor's own book,
    `provider` is then its upstream counterparty, e.g. "book:platform")."""

    provider: str
    prepaid: Decimal
    payables: Decimal
    days_of_cover: Decimal | None


@dataclass(frozen=True, slots=True)
class CustomerExposure:
    account: str
    unbilled: Decimal
    receivables: Decimal
    deposits: Decimal

    @property
    def exposure(self) -> Decimal:
        return self.unbilled + self.receivables


# The figures of an exposure, in the order reports and charts show them.
EXPOSURE_FIELDS = (
    "upstream_prepaid",
    "unbilled",
    "receivables",
    "gross",
    "customer_deposits",
    "upstream_payables",
    "net",
)


@dataclass(frozen=True, slots=True)
class Exposure:
    """§9: gross = upstream prepaid + unbilled + receivables; net = gross - customer deposits -
    upstream payables (the net funding position)."""

    book: str
    currency: str
    as_of: datetime
    upstream_prepaid: Decimal
    unbilled: Decimal
    receivables: Decimal
    gross: Decimal
    customer_deposits: Decimal
    upstream_payables: Decimal
    net: Decimal
    per_provider: list[ProviderExposure] = field(default_factory=list)
    top_customers: list[CustomerExposure] = field(default_factory=list)


def _balances_as_of(*, book: Book, account_code: str, currency: str, as_of: datetime) -> dict[str, Decimal]:
    """One account's balances per counterparty (normal side) from postings dated by `as_of`."""
    account = LedgerAccount.objects.get(book=book, code=account_code)
    rows = (
        Posting.objects.filter(ledger_account=account, currency=currency, entry__occurred_at__lte=as_of)
        .values("counterparty")
        .annotate(
            debits=Coalesce(Sum("amount", filter=Q(side=Side.DEBIT)), _ZERO, output_field=_SUM),
            credits=Coalesce(Sum("amount", filter=Q(side=Side.CREDIT)), _ZERO, output_field=_SUM),
        )
        .order_by("counterparty")
    )
    debit_normal = account.normal_side == Side.DEBIT
    found = {}
    for row in rows:
        amount = row["debits"] - row["credits"] if debit_normal else row["credits"] - row["debits"]
        if amount != 0:
            found[row["counterparty"]] = amount
    return found


# Rated usage up to a day less what invoices that are no longer drafts bill of those months.
_UNBILLED_THROUGH = """
    SELECT payer, sum(amount) FROM (
        SELECT payer_account_id AS payer, amount FROM settlement_usagerollup
        WHERE {rated} AND currency = %(currency)s AND NOT prepaid AND day <= %(through)s
        UNION ALL
        SELECT u.payer_account_id, -u.amount
        FROM settlement_invoiceusage u JOIN settlement_invoice i ON i.id = u.invoice_id
        WHERE {billed} AND i.currency = %(currency)s AND i.status <> 'draft' AND u.month <= %(through)s
    ) AS moves
    GROUP BY payer
"""


def _unbilled_through(*, rated: str, billed: str, params: dict[str, Any]) -> dict[int, Decimal]:
    with connection.cursor() as cursor:
        cursor.execute(_UNBILLED_THROUGH.format(rated=rated, billed=billed), params)
        return {payer: amount for payer, amount in cursor if amount}


def _unbilled_by_payer(*, payee_book: Book, currency: str, through: date) -> dict[int, Decimal]:
    """§11.6: exact postpaid usage not yet on an issued invoice (drafts count), per paying account."""
    return _unbilled_through(
        rated="payee_book_id = %(book)s",
        billed="i.issuer_book_id = %(book)s",
        params={"book": payee_book.pk, "currency": currency, "through": through},
    )


def _own_unbilled(*, account: Any, currency: str, through: date) -> Decimal:
    """A distributor's own accrued usage at its own price, not yet invoiced by its parent."""
    return _unbilled_through(
        rated="payer_account_id = %(payer)s",
        billed="u.payer_account_id = %(payer)s",
        params={"payer": account.pk, "currency": currency, "through": through},
    ).get(account.pk, Decimal(0))


def exposure(*, book: Book, currency: str, as_of: datetime) -> Exposure:
    """The book's prepayment exposure and net funding position in one currency as of `as_of` (§9).

    Root book: upstream prepaid = providers' prepaid credit left at cost (the upstream_prepayments
    ledger, equal to procurement's figure), upstream payables = what the providers are owed. A
    distributor's own book (§11.7): upstream prepaid = its wallet and credit balance at its parent
    (the parent book's deposit held for it), upstream payables = its open invoices from the parent
    (its own upstream_payables ledger: a write-off upstream does not clear it, §11.14) + its
    accrued unbilled usage at its own price. Customer deposits = wallets and credit balances held
    for the book's children."""
    from accounts.models import Account
    from procurement.models import Provider
    from procurement.selectors import provider_cover

    check_currency(currency)
    today = _local_date(book, as_of)
    receivables_by = _balances_as_of(book=book, account_code="receivables", currency=currency, as_of=as_of)
    deposits_by = _balances_as_of(book=book, account_code="customer_deposits", currency=currency, as_of=as_of)
    unbilled_by = _unbilled_by_payer(payee_book=book, currency=currency, through=today)
    owner = Account.objects.filter(own_book=book).select_related("book").first()

    per_provider: list[ProviderExposure] = []
    if owner is None:
        prepaid_by = _balances_as_of(
            book=book, account_code="upstream_prepayments", currency=currency, as_of=as_of
        )
        payables_by = _balances_as_of(
            book=book, account_code="upstream_payables", currency=currency, as_of=as_of
        )
        upstream_prepaid = sum(prepaid_by.values(), Decimal(0))
        upstream_payables = sum(payables_by.values(), Decimal(0))
        codes = sorted(
            {cp.removeprefix("provider:") for cp in (*prepaid_by, *payables_by) if cp.startswith("provider:")}
        )
        providers = {p.code: p for p in Provider.objects.filter(code__in=codes)}
        for code in codes:
            provider = providers.get(code)
            cover = None
            if provider is not None and provider.currency == currency:
                cover = provider_cover(book=book, provider=provider, now=as_of).days_of_cover
            per_provider.append(
                ProviderExposure(
                    provider=code,
                    prepaid=prepaid_by.get(f"provider:{code}", Decimal(0)),
                    payables=payables_by.get(f"provider:{code}", Decimal(0)),
                    days_of_cover=cover,
                )
            )
    else:
        from settlement.services.invoicing import upstream_counterparty

        upstream_prepaid = account_balance(
            book=owner.book,
            account_code="customer_deposits",
            currency=currency,
            counterparty=owner.counterparty,
            as_of=as_of,
        )
        invoiced = account_balance(
            book=book, account_code="upstream_payables", currency=currency, as_of=as_of
        )
        upstream_payables = invoiced + _own_unbilled(
            account=owner, currency=currency, through=_local_date(owner.book, as_of)
        )
        per_provider.append(
            ProviderExposure(
                provider=upstream_counterparty(owner),
                prepaid=upstream_prepaid,
                payables=upstream_payables,
                days_of_cover=None,
            )
        )

    unbilled = sum(unbilled_by.values(), Decimal(0))
    receivables = sum(receivables_by.values(), Decimal(0))
    customer_deposits = sum(deposits_by.values(), Decimal(0))
    gross = upstream_prepaid + unbilled + receivables
    net = gross - customer_deposits - upstream_payables
    return Exposure(
        book=book.code,
        currency=currency,
        as_of=as_of,
        upstream_prepaid=upstream_prepaid,
        unbilled=unbilled,
        receivables=receivables,
        gross=gross,
        customer_deposits=customer_deposits,
        upstream_payables=upstream_payables,
        net=net,
        per_provider=per_provider,
        top_customers=_top_customers(receivables_by, deposits_by, unbilled_by),
    )


def _top_customers(
    receivables_by: dict[str, Decimal], deposits_by: dict[str, Decimal], unbilled_by: dict[int, Decimal]
) -> list[CustomerExposure]:
    from accounts.models import Account

    codes_by_id = dict(Account.objects.filter(pk__in=unbilled_by).values_list("pk", "code"))
    unbilled = {
        f"account:{codes_by_id[pk]}": amount for pk, amount in unbilled_by.items() if pk in codes_by_id
    }
    counterparties = {cp for cp in (*receivables_by, *deposits_by, *unbilled) if cp.startswith("account:")}
    rows = [
        CustomerExposure(
            account=cp.removeprefix("account:"),
            unbilled=unbilled.get(cp, Decimal(0)),
            receivables=receivables_by.get(cp, Decimal(0)),
            deposits=deposits_by.get(cp, Decimal(0)),
        )
        for cp in counterparties
    ]
    rows.sort(key=lambda r: (-r.exposure, r.account))
    return rows[:TOP_CUSTOMERS]


def book_currencies(*, book: Book) -> list[str]:
    """The currencies the book has posted in, its base currency always included."""
    from ledger.models import AccountBalance

    found = set(
        AccountBalance.objects.filter(ledger_account__book=book).values_list("currency", flat=True).distinct()
    )
    found.add(book.currency)
    return sorted(found)


def exposure_history(
    *, book: Book, currency: str, since: datetime, until: datetime
) -> QuerySet[ExposureSnapshot]:
    """The daily snapshots taken between `since` and `until` (by their as-of moment), oldest first."""
    return ExposureSnapshot.objects.filter(
        book=book, currency=currency, as_of__gte=since, as_of__lte=until
    ).order_by("as_of")
