"""§11.12: a prepaid wallet never goes below zero; usage beyond it is still recorded, and the
shortfall becomes a receivable of the parent, billed on an invoice at the next close.

Ingestion already booked the shortfall (rating's drawdown entry: debit receivables, credit revenue,
exact). At the monthly close, each prepaid account whose usage drawdowns left receivables that no
invoice has billed yet gets one invoice for them, issued there and then: the amount is already in
the ledger and nothing about it can change in a grace period, so there is no draft to re-rate.

- What is billed: every usage-drawdown receivable booked before the period's end, less the exact
  amounts of the account's earlier shortfall invoices. A residue that rounds to 0.00 waits for the
  next close instead of being lost; a late event's drawdown (booked when it arrived, §11.4) falls
  in the month it arrived in, like the statement's figures.
- The invoice: one line "Prepaid usage beyond the wallet balance", exact amount and the amount
  rounded half-up once; tax at the account's rate on the rounded subtotal (§11.2); due at the
  period's end plus the account's net days (as every invoice).
- The posting books only what the drawdowns did not: the rounding (receivables against revenue)
  and the tax (receivables against tax payable), so receivables for the account then hold the
  invoice's total exactly. The account's own book, if any, is left as prepaid drawdowns leave it.
- Paid like any invoice: `payment_record` allocates to it first. A top-up goes to the wallet, as
  a top-up always does (docs/close.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from accounts.webhooks import invoices_issued_emit
from distributor.money import round_minor
from ledger.models import Book
from ledger.services import EntryDraft, Leg, credit, debit, entries_post
from settlement.models import Invoice, InvoiceLine, InvoiceLineKind, InvoiceStatus
from settlement.selectors import prepaid_shortfalls_unbilled
from settlement.services.credit_control import credit_states_refresh_on_commit
from settlement.services.invoicing import (
    Period,
    book_zone,
    invoice_due_date,
    invoice_number,
    invoice_tax,
    numbers_take,
)

PREPAID_SHORTFALL_DESCRIPTION = "Prepaid usage beyond the wallet balance"


def prepaid_shortfalls_invoice(*, book: Book, accounts: Sequence[Any], period: Period, now: datetime) -> int:
    """Issue the shortfall invoice of `period` for each of these prepaid accounts that has one to
    bill and no invoice for the period yet. Runs inside the close's chunk transaction; a rerun
    finds the invoices and issues nothing twice. Returns how many were issued."""
    tz = book_zone(book)
    have = set(
        Invoice.objects.filter(
            account__in=accounts, period_kind=period.kind, period_start=period.start
        ).values_list("account_id", flat=True)
    )
    candidates = [a for a in accounts if a.pk not in have]
    if not candidates:
        return 0
    unbilled = prepaid_shortfalls_unbilled(book=book, accounts=candidates, before=period.ends_at(tz))
    billing: list[tuple[Any, Decimal, Decimal]] = []
    for account in candidates:
        exact = unbilled.get(account.pk)
        if exact is None:
            continue
        subtotal = round_minor(exact, account.currency)
        if subtotal > 0:
            billing.append((account, exact, subtotal))
    if not billing:
        return 0

    issue_date = now.astimezone(tz).date()
    numbers = numbers_take(book=book, series="INV", year=issue_date.year, count=len(billing))
    stamp = timezone.now()
    issued: list[tuple[Invoice, Any, Decimal]] = []
    for (account, exact, subtotal), sequence in zip(billing, numbers, strict=True):
        tax = invoice_tax(subtotal, account.tax_rate, account.currency)
        # Drawn as a draft with its line, then issued: the database refuses line changes on an
        # invoice that is no longer a draft (settlement migration 0006).
        invoice = Invoice.objects.create(
            issuer_book=book,
            account=account,
            period_kind=period.kind,
            period_start=period.start,
            period_end=period.end,
            label=period.label,
            currency=account.currency,
            due_date=invoice_due_date(period, account),
            tax_rate=account.tax_rate,
            subtotal=subtotal,
            tax=tax,
            total=subtotal + tax,
            drafted_at=now,
        )
        InvoiceLine.objects.create(
            invoice=invoice,
            position=1,
            kind=InvoiceLineKind.WALLET_SHORTFALL,
            description=PREPAID_SHORTFALL_DESCRIPTION,
            exact_amount=exact,
            amount=subtotal,
        )
        invoice.number = invoice_number(book, issue_date.year, sequence)
        invoice.status = InvoiceStatus.ISSUED
        invoice.issue_date = issue_date
        invoice.issued_at = now
        invoice.updated_at = stamp
        invoice.save(update_fields=["number", "status", "issue_date", "issued_at", "updated_at"])
        issued.append((invoice, account, exact))

    entries_post(book=book, drafts=[d for d in (_posting(i, a, e) for i, a, e in issued) if d is not None])
    account_ids = sorted(a.pk for _, a, _ in issued)
    credit_states_refresh_on_commit(account_ids=account_ids)
    invoices_issued_emit(issued=[(invoice, account) for invoice, account, _ in issued])
    return len(issued)


def _posting(invoice: Invoice, account: Any, exact: Decimal) -> EntryDraft | None:
    """What the drawdowns did not book: the rounding of the exact shortfall, and the tax."""
    cur, cp = invoice.currency, account.counterparty
    rounding = invoice.subtotal - exact
    owed = rounding + invoice.tax
    legs: list[Leg] = []
    if owed > 0:
        legs.append(debit("receivables", owed, cur, cp))
    elif owed < 0:
        legs.append(credit("receivables", -owed, cur, cp))
    if rounding > 0:
        legs.append(credit("revenue", rounding, cur, cp))
    elif rounding < 0:
        legs.append(debit("revenue", -rounding, cur, cp))
    if invoice.tax > 0:
        legs.append(credit("tax_payable", invoice.tax, cur))
    if not legs:
        return None
    return EntryDraft(
        idempotency_key=f"invoice:{invoice.pk}",
        occurred_at=invoice.issued_at or invoice.drafted_at,
        legs=legs,
        description=f"Invoice {invoice.number} to {account.code} for {invoice.label}: prepaid shortfall",
        source_type="invoice",
        source_id=str(invoice.pk),
    )
