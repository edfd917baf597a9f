"""Bad debt (§9, §11.10, §11.14): the versioned provision matrix, the month-end provisioning run,
invoice write-offs and their recovery, and the daily exposure snapshots.

Provisioning (IFRS 9 simplified approach): required allowance = Σ(bucket balance x rate), rounded
once half-up to the minor unit; only the change against the allowance's ledger balance is posted
(debit bad-debt expense / credit allowance, or the reverse for a release). One run per book,
currency and month of the book's zone: the first run of a month fixes that month's entry, a rerun
returns it and posts nothing (the next month trues up whatever changed since).

A write-off takes an invoice's open amount out of receivables in the issuer's book, against the
allowance first and to bad-debt expense beyond it; the payer's own book keeps its payable (§11.14).
A later payment on a written-off invoice is a recovery: the write-off is reversed by that much
(the expensed part first, then the allowance part, the mirror of how it was used) and the payment
is applied to the reinstated receivable as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum

from distributor.errors import Conflict, PermissionRefused, ValidationFailed
from distributor.money import check_currency, round_minor, to_decimal
from ledger.models import Book
from ledger.services import Leg, credit, debit, entry_post
from settlement.models import (
    ExposureSnapshot,
    Invoice,
    InvoiceStatus,
    Payment,
    ProvisionMatrix,
    ProvisionRate,
    ProvisionRun,
    WriteOff,
    WriteOffRecovery,
)
from settlement.risk_selectors import (
    DEFAULT_EDGES,
    aging_by_edges,
    allowance_balance,
    book_currencies,
    bucket_labels,
    edges_check,
    exposure,
    matrix_in_force,
)
from settlement.services.credit_control import credit_states_refresh_on_commit
from settlement.services.invoicing import book_zone, period_of

WRITE_OFF_PERMISSION = "settlement.write_off_invoice"
WRITABLE_OFF = (InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID)
_RATE_PLACES = 10


# --- the matrix -----------------------------------------------------------------------------------


def _rates_check(rates: Mapping[str, Any], labels: list[str]) -> dict[str, Decimal]:
    missing = [label for label in labels if label not in rates]
    unknown = [str(key) for key in rates if key not in labels]
    if missing or unknown:
        raise ValidationFailed(
            "the matrix needs one rate per aging bucket",
            details={"buckets": labels, "missing": missing, "unknown": unknown},
        )
    checked = {}
    for label in labels:
        rate = to_decimal(rates[label], field=f"rate {label}")
        if rate < 0 or rate > 1:
            raise ValidationFailed(f"the {label} rate must be between 0 and 1", details={label: str(rate)})
        if rate != rate.quantize(Decimal(1).scaleb(-_RATE_PLACES)):
            raise ValidationFailed(
                f"the {label} rate has more than {_RATE_PLACES} decimal places", details={label: str(rate)}
            )
        checked[label] = rate
    return checked


def provision_matrix_set(
    *,
    book: Book,
    rates: Mapping[str, Decimal],
    effective_from: date,
    edges: Sequence[int] | None = None,
    by: Any | None = None,
) -> ProvisionMatrix:
    """A new version of the book's provision matrix, in force from `effective_from` (book's zone).
    Setting the same rates, edges and date as the latest version returns it (a replay); a version
    may not start before the latest one (that would change provisions already booked)."""
    checked_edges = edges_check(DEFAULT_EDGES if edges is None else edges)
    labels = bucket_labels(checked_edges)
    checked = _rates_check(rates, labels)
    with transaction.atomic():
        # The book row serializes version numbers (and runs, which lock it too).
        Book.objects.select_for_update().get(pk=book.pk)
        latest = ProvisionMatrix.objects.filter(book=book).order_by("-version").first()
        if latest is not None:
            same_rates = {r.bucket: r.rate for r in latest.rates.all()} == checked
            if (
                latest.effective_from == effective_from
                and tuple(latest.edges) == checked_edges
                and same_rates
            ):
                return latest
            if effective_from < latest.effective_from:
                raise ValidationFailed(
                    f"a new matrix cannot start before the latest version (v{latest.version}, "
                    f"from {latest.effective_from.isoformat()})",
                    details={"effective_from": effective_from.isoformat()},
                )
        matrix = ProvisionMatrix.objects.create(
            book=book,
            version=(latest.version + 1) if latest is not None else 1,
            effective_from=effective_from,
            edges=list(checked_edges),
            created_by=by,
        )
        ProvisionRate.objects.bulk_create(
            ProvisionRate(matrix=matrix, position=i, bucket=label, rate=checked[label])
            for i, label in enumerate(labels)
        )
    return matrix


# --- the month-end run ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvisionLine:
    """One currency of a run: the required allowance, the balance found, and the change posted."""

    currency: str
    receivables: Decimal
    required: Decimal
    balance_before: Decimal
    change: Decimal
    entry_id: int | None
    replayed: bool


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    book: str
    period: str
    as_of: datetime
    matrix_version: int | None
    lines: list[ProvisionLine] = field(default_factory=list)

    @property
    def posted(self) -> bool:
        return any(line.entry_id is not None and not line.replayed for line in self.lines)


def required_allowance(
    *, buckets: Mapping[str, Decimal], rates: Mapping[str, Decimal], currency: str
) -> Decimal:
    """Σ(bucket balance x rate), exact, rounded ONCE half-up to the minor unit (§9)."""
    exact = sum((amount * rates.get(label, Decimal(0)) for label, amount in buckets.items()), Decimal(0))
    return round_minor(exact, currency)


def _line_of(run: ProvisionRun, replayed: bool) -> ProvisionLine:
    return ProvisionLine(
        currency=run.currency,
        receivables=run.receivables,
        required=run.required,
        balance_before=run.balance_before,
        change=run.change,
        entry_id=run.entry_id,
        replayed=replayed,
    )


def provision_run(*, book: Book, as_of: datetime) -> ProvisionResult:
    """Provision the book as of `as_of` for the month containing it (book's zone), per currency.
    No matrix in force: nothing is posted. Idempotent per (book, currency, month)."""
    if as_of.tzinfo is None:
        raise ValidationFailed("as_of must carry a time zone", details={"as_of": str(as_of)})
    local_day = as_of.astimezone(book_zone(book)).date()
    period = period_of("month", local_day)
    matrix = matrix_in_force(book=book, on=local_day)
    if matrix is None:
        return ProvisionResult(book=book.code, period=period.label, as_of=as_of, matrix_version=None)
    rates = {r.bucket: r.rate for r in matrix.rates.all()}
    edges = tuple(matrix.edges)
    lines = []
    for currency in book_currencies(book=book):
        with transaction.atomic():
            Book.objects.select_for_update().get(pk=book.pk)
            done = ProvisionRun.objects.filter(
                book=book, currency=currency, period_start=period.start
            ).first()
            if done is not None:
                lines.append(_line_of(done, replayed=True))
                continue
            figures = aging_by_edges(book=book, currency=currency, as_of=as_of, edges=edges)
            required = required_allowance(buckets=figures.buckets, rates=rates, currency=currency)
            before = allowance_balance(book=book, currency=currency, as_of=as_of)
            change = required - before
            entry = None
            if change != 0:
                legs = (
                    [debit("bad_debt_expense", change, currency), credit("allowance", change, currency)]
                    if change > 0
                    else [
                        debit("allowance", -change, currency),
                        credit("bad_debt_expense", -change, currency),
                    ]
                )
                entry = entry_post(
                    book=book,
                    idempotency_key=f"provision:{currency}:{period.label}",
                    occurred_at=as_of,
                    legs=legs,
                    description=(
                        f"Bad-debt provision {period.label} {currency}: required {required} "
                        f"(matrix v{matrix.version}), held {before}"
                    ),
                    source_type="provision_run",
                    source_id=f"{book.code}:{currency}:{period.label}",
                )
            run = ProvisionRun.objects.create(
                book=book,
                currency=currency,
                period_start=period.start,
                label=period.label,
                as_of=as_of,
                matrix=matrix,
                receivables=figures.total,
                required=required,
                balance_before=before,
                change=change,
                entry=entry,
            )
            lines.append(_line_of(run, replayed=False))
    return ProvisionResult(
        book=book.code, period=period.label, as_of=as_of, matrix_version=matrix.version, lines=lines
    )


def month_end_before(*, book: Book, now: datetime) -> datetime:
    """The last instant of the latest month that has ended at `now` in the book's zone."""
    zone = book_zone(book)
    month_start = now.astimezone(zone).date().replace(day=1)
    return datetime.combine(month_start, time(0), tzinfo=zone) - timedelta(microseconds=1)


def provision_all_books(*, now: datetime) -> list[ProvisionResult]:
    """The month-end job: every book provisioned as of the end of its latest ended month."""
    return [
        provision_run(book=book, as_of=month_end_before(book=book, now=now))
        for book in Book.objects.order_by("pk")
    ]


# --- write-offs -----------------------------------------------------------------------------------


def invoice_write_off(*, invoice: Invoice, by: Any | None, at: datetime, reason: str = "") -> WriteOff:
    """Write off what is still open on an issued or partially paid invoice (a controller's action,
    `settlement.write_off_invoice`; `by=None` is a job or the scenario). Against the allowance's
    balance first, the rest to bad-debt expense (§11.10)."""
    if by is not None and not by.has_perm(WRITE_OFF_PERMISSION):
        raise PermissionRefused(
            "writing off an invoice needs the permission “Can write off invoices”",
            details={"permission": WRITE_OFF_PERMISSION, "invoice": invoice.number or invoice.pk},
        )
    if at.tzinfo is None:
        raise ValidationFailed("at must carry a time zone", details={"at": str(at)})
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update().select_related("account", "issuer_book").get(pk=invoice.pk)
        )
        where = {"invoice": invoice.number or invoice.pk, "status": invoice.status}
        if invoice.status not in WRITABLE_OFF:
            raise ValidationFailed(
                f"only an issued or partially paid invoice can be written off; "
                f"{invoice.number or 'this draft'} is {invoice.status}",
                details=where,
            )
        open_amount = invoice.open_amount
        if open_amount <= 0:
            raise ValidationFailed(f"nothing is open on {invoice.number} to write off", details=where)
        currency = invoice.currency
        held = max(allowance_balance(book=invoice.issuer_book, currency=currency, as_of=at), Decimal(0))
        against = min(open_amount, held)
        expensed = open_amount - against
        legs: list[Leg] = []
        if against > 0:
            legs.append(debit("allowance", against, currency))
        if expensed > 0:
            legs.append(debit("bad_debt_expense", expensed, currency))
        legs.append(credit("receivables", open_amount, currency, invoice.account.counterparty))
        entry = entry_post(
            book=invoice.issuer_book,
            idempotency_key=f"write-off:{invoice.pk}",
            occurred_at=at,
            legs=legs,
            description=f"Write-off of {invoice.number} ({invoice.account.code}): {reason}"[:500],
            source_type="invoice",
            source_id=str(invoice.pk),
        )
        write_off = WriteOff.objects.create(
            invoice=invoice,
            book=invoice.issuer_book,
            currency=currency,
            amount=open_amount,
            against_allowance=against,
            expensed=expensed,
            at=at,
            by=by,
            reason=reason[:300],
            entry=entry,
        )
        invoice.written_off_amount += open_amount
        invoice.status = InvoiceStatus.WRITTEN_OFF
        invoice.save(update_fields=["written_off_amount", "status", "updated_at"])
        account_id = invoice.account_id
        credit_states_refresh_on_commit(account_ids=[account_id])
    return write_off


def write_off_recover(
    *, invoice: Invoice, payment: Payment, amount: Decimal, at: datetime
) -> WriteOffRecovery:
    """Reverse `amount` of the invoice's write-off because `payment` brought it in: reinstate the
    receivable (debit receivables) against bad-debt expense for what was expensed, then the
    allowance. The caller (payment allocation) applies the payment to the invoice afterwards; it
    holds the invoice's row lock."""
    write_off = WriteOff.objects.select_for_update().get(invoice=invoice)
    if amount <= 0 or amount > write_off.amount - write_off.recovered:
        raise Conflict(
            f"{invoice.number} has {write_off.amount - write_off.recovered} written off to recover",
            details={"amount": str(amount)},
        )
    expense_back = write_off.recoveries.aggregate(s=Sum("to_expense"))["s"] or Decimal(0)
    to_expense = min(amount, write_off.expensed - expense_back)
    to_allowance = amount - to_expense
    currency = invoice.currency
    legs: list[Leg] = [debit("receivables", amount, currency, f"account:{invoice.account.code}")]
    if to_expense > 0:
        legs.append(credit("bad_debt_expense", to_expense, currency))
    if to_allowance > 0:
        legs.append(credit("allowance", to_allowance, currency))
    entry = entry_post(
        book=invoice.issuer_book,
        idempotency_key=f"write-off-recovery:{write_off.pk}:{payment.pk}",
        occurred_at=at,
        legs=legs,
        description=f"Recovery of written-off {invoice.number} by payment {payment.reference}",
        source_type="payment",
        source_id=str(payment.pk),
    )
    recovery = WriteOffRecovery.objects.create(
        write_off=write_off,
        payment=payment,
        amount=amount,
        to_expense=to_expense,
        to_allowance=to_allowance,
        at=at,
        entry=entry,
    )
    write_off.recovered += amount
    write_off.save(update_fields=["recovered"])
    invoice.written_off_amount -= amount
    if invoice.written_off_amount == 0:
        # Wholly recovered: the invoice is an ordinary one again and settles as paid.
        invoice.status = InvoiceStatus.ISSUED
    invoice.save(update_fields=["written_off_amount", "status", "updated_at"])
    return recovery


# --- exposure snapshots ---------------------------------------------------------------------------


def exposure_snapshot_take(*, book: Book, currency: str, day: date) -> ExposureSnapshot:
    """The book's exposure at the end of `day` (book's zone), stored once: a rerun for a day
    already taken returns the stored row, so the history never changes under the charts."""
    check_currency(currency)
    existing = ExposureSnapshot.objects.filter(book=book, currency=currency, day=day).first()
    if existing is not None:
        return existing
    zone = book_zone(book)
    as_of = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone) - timedelta(microseconds=1)
    figures = exposure(book=book, currency=currency, as_of=as_of)
    snapshot, _ = ExposureSnapshot.objects.get_or_create(
        book=book,
        currency=currency,
        day=day,
        defaults={
            "as_of": as_of,
            "upstream_prepaid": figures.upstream_prepaid,
            "unbilled": figures.unbilled,
            "receivables": figures.receivables,
            "gross": figures.gross,
            "customer_deposits": figures.customer_deposits,
            "upstream_payables": figures.upstream_payables,
            "net": figures.net,
        },
    )
    return snapshot


def exposure_snapshots_take_all(*, now: datetime) -> int:
    """The daily job: each book's and currency's snapshot of the last day that has ended in the
    book's zone. Returns how many snapshots exist for those days (taken now or before)."""
    if now.tzinfo is None:
        raise ValidationFailed("now must carry a time zone", details={"now": str(now)})
    count = 0
    for book in Book.objects.order_by("pk"):
        yesterday = now.astimezone(book_zone(book)).date() - timedelta(days=1)
        for currency in book_currencies(book=book):
            exposure_snapshot_take(book=book, currency=currency, day=yesterday)
            count += 1
    return count
