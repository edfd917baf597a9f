"""Credit notes (§7): the only correction of an issued invoice. A credit note has its own gapless
series per book and year (`{BOOK}-CN-{YEAR}-{000001}`) and posts the mirror of the invoice's entry
for the credited amount, split between revenue and tax in the invoice's proportion. Voiding is a
full credit note. Nothing issued is ever edited.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from distributor.errors import Conflict, ValidationFailed
from distributor.money import round_minor, to_decimal
from ledger.services import Leg, credit, debit, entry_post
from settlement.models import CreditNote, Invoice, InvoiceStatus
from settlement.services.invoicing import (
    book_zone,
    invoice_status_settle,
    number_next,
    upstream_counterparty,
)

CREDITABLE = (InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID)


def credit_note_issue(
    *, invoice: Invoice, amount: Decimal, reason: str, now: datetime, idempotency_key: str
) -> CreditNote:
    """Credit `amount` (tax included) of an issued invoice, at most its open amount: a paid part
    is refunded or kept as a credit balance by other means, not by a credit note here. The same
    key returns the credit note already made; the same key with another amount is refused."""
    amount = to_decimal(amount, field="amount")
    if now.tzinfo is None:
        raise ValidationFailed("now must carry a time zone")
    if not reason.strip():
        raise ValidationFailed("a credit note needs a reason")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("issuer_book").get(pk=invoice.pk)
        existing = CreditNote.objects.filter(invoice=invoice, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.total != amount:
                raise Conflict(
                    "a credit note with this key was made for a different amount",
                    details={"idempotency_key": idempotency_key, "total": str(existing.total)},
                )
            return existing
        if invoice.status not in CREDITABLE:
            raise ValidationFailed(
                f"only an issued, unsettled invoice can be credited; {invoice} is {invoice.status}",
                details={"invoice": str(invoice), "status": invoice.status},
            )
        if amount <= 0 or round_minor(amount, invoice.currency) != amount or amount > invoice.open_amount:
            raise ValidationFailed(
                f"a credit note is a positive amount in the minor unit, at most the open {invoice.open_amount}",
                details={"amount": str(amount), "open": str(invoice.open_amount)},
            )
        # The tax share follows the invoice's own proportion; revenue takes the rest, so the two
        # parts always add up to the credited amount.
        tax = (
            round_minor(amount * invoice.tax / invoice.total, invoice.currency)
            if invoice.total
            else Decimal(0)
        )
        subtotal = amount - tax
        book = invoice.issuer_book
        issue_date = now.astimezone(book_zone(book)).date()
        sequence = number_next(book=book, series="CN", year=issue_date.year)
        note = CreditNote.objects.create(
            invoice=invoice,
            issuer_book=book,
            number=f"{book.code.upper()}-CN-{issue_date.year}-{sequence:06d}",
            reason=reason.strip(),
            currency=invoice.currency,
            subtotal=subtotal,
            tax=tax,
            total=amount,
            issued_at=now,
            issue_date=issue_date,
            idempotency_key=idempotency_key,
        )
        invoice.credited_amount += amount
        invoice_status_settle(invoice)
        invoice.save(update_fields=["credited_amount", "status", "updated_at"])
        _credit_note_post(note=note, invoice=invoice)
    return note


def _credit_note_post(*, note: CreditNote, invoice: Invoice) -> None:
    from accounts.models import Account

    account = Account.objects.select_related("own_book", "parent", "book").get(pk=invoice.account_id)
    cur, cp = note.currency, f"account:{account.code}"
    legs: list[Leg] = [credit("receivables", note.total, cur, cp)]
    if note.subtotal > 0:
        legs.append(debit("revenue", note.subtotal, cur, cp))
    if note.tax > 0:
        legs.append(debit("tax_payable", note.tax, cur))
    key = f"credit-note:{note.pk}"
    entry_post(
        book=note.issuer_book,
        idempotency_key=key,
        occurred_at=note.issued_at,
        legs=legs,
        description=f"Credit note {note.number} on {invoice.number}: {note.reason}"[:500],
        source_type="credit_note",
        source_id=str(note.pk),
    )
    if account.own_book is not None:
        upstream = upstream_counterparty(account)
        entry_post(
            book=account.own_book,
            idempotency_key=key,
            occurred_at=note.issued_at,
            legs=[
                debit("upstream_payables", note.total, cur, upstream),
                credit("cost_of_sales", note.total, cur, upstream),
            ],
            description=f"Credit note {note.number} from {upstream} on {invoice.number}"[:500],
            source_type="credit_note",
            source_id=str(note.pk),
        )


def invoice_void(*, invoice: Invoice, reason: str, now: datetime) -> CreditNote:
    """Void an issued invoice that nothing has been paid on: a full credit note, status void."""
    invoice = Invoice.objects.get(pk=invoice.pk)
    done = CreditNote.objects.filter(invoice=invoice, idempotency_key="void").first()
    if done is not None:
        return done
    if invoice.paid_amount > 0:
        raise ValidationFailed(
            f"{invoice} has payments applied; credit its open amount instead of voiding it",
            details={"invoice": str(invoice), "paid": str(invoice.paid_amount)},
        )
    remaining = invoice.total - invoice.credited_amount - invoice.written_off_amount
    return credit_note_issue(
        invoice=invoice, amount=remaining, reason=reason or "Void", now=now, idempotency_key="void"
    )
