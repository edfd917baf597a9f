"""Payments (§7): money an account pays its parent, allocated to named invoices or oldest-first
(by due date, then number); any excess is a credit balance that the next issued invoice consumes.

Each payment posts in both books of the hop: the issuer's (cash in; receivables for what was
allocated, customer deposits for the excess) and, if the payer keeps its own book, the payer's
(cash out; upstream payables settled, upstream prepayments for the excess).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum

from accounts.webhooks import payment_received_emit
from distributor.errors import Conflict, ValidationFailed
from distributor.money import check_currency, normalize, round_minor, to_decimal
from ledger.services import Leg, credit, debit, entry_post
from settlement.models import Invoice, InvoiceStatus, Payment, PaymentAllocation
from settlement.services.credit_control import credit_states_refresh_on_commit
from settlement.services.dunning import dunning_lift_if_settled
from settlement.services.invoicing import invoice_status_settle, upstream_counterparty

OPEN_STATUSES = (InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID)


def _content_hash(amount: Decimal, currency: str, received_at: datetime, periods: Sequence[str]) -> str:
    payload = [normalize(amount), currency, received_at.astimezone(UTC).isoformat(), list(periods)]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def payment_record(
    *,
    account: Any,
    amount: Decimal,
    currency: str,
    received_at: datetime,
    reference: str,
    invoice_periods: Sequence[str] | None = None,
) -> Payment:
    """Record a payment from `account` to its parent. The reference is unique per payer: a replay
    returns the first payment unchanged; the same reference with different content is refused."""
    amount = to_decimal(amount, field="amount")
    check_currency(currency)
    periods = list(invoice_periods or [])
    if not reference or len(reference) > 200:
        raise ValidationFailed("a payment needs a reference of 1 to 200 characters")
    if received_at.tzinfo is None:
        raise ValidationFailed("received_at must carry a time zone")
    if amount <= 0 or round_minor(amount, currency) != amount:
        raise ValidationFailed(
            "a payment is a positive amount in the minor unit", details={"amount": str(amount)}
        )
    if currency != account.currency:
        raise ValidationFailed(
            f"{account.code} pays in {account.currency}, not {currency}",
            details={"currency": currency, "account_currency": account.currency},
        )
    digest = _content_hash(amount, currency, received_at, periods)
    existing = Payment.objects.filter(account=account, reference=reference).first()
    if existing is not None:
        return _replayed(existing, digest)
    try:
        with transaction.atomic():
            payment = Payment.objects.create(
                account=account,
                payee_book_id=account.book_id,
                amount=amount,
                currency=currency,
                received_at=received_at,
                reference=reference,
                invoice_periods=periods,
                content_hash=digest,
            )
            allocated = _allocate(payment=payment, account=account, periods=periods, at=received_at)
            _payment_post(payment=payment, account=account, allocated=allocated)
            payment_received_emit(payment=payment)  # webhooks: delivered once this commits
            credit_states_refresh_on_commit(account_ids=[account.pk])
            # §9: payment in full lifts a dunning hold or suspension (in this same transaction).
            dunning_lift_if_settled(account=account, at=received_at)
    except IntegrityError:
        # A concurrent replay of the same reference won the unique index: answer as a replay.
        existing = Payment.objects.filter(account=account, reference=reference).first()
        if existing is None:
            raise
        return _replayed(existing, digest)
    return payment


def _replayed(existing: Payment, digest: str) -> Payment:
    if existing.content_hash != digest:
        raise Conflict(
            "a payment with this reference was already recorded with different content",
            details={"reference": existing.reference},
        )
    return existing


def _allocate(*, payment: Payment, account: Any, periods: list[str], at: datetime) -> Decimal:
    """Apply the payment to invoices (locked in id order); returns the amount allocated."""
    from settlement.services.invoicing import period_from_label

    # Written-off invoices take payments too: that is a recovery (§9, settlement.services.provisioning).
    open_invoices = list(
        Invoice.objects.filter(account=account, status__in=(*OPEN_STATUSES, InvoiceStatus.WRITTEN_OFF))
        .order_by("pk")
        .select_for_update()
    )
    if periods:
        by_label = {inv.label: inv for inv in open_invoices}
        wanted = [period_from_label(label).label for label in periods]
        missing = [label for label in wanted if label not in by_label]
        if missing:
            raise ValidationFailed(
                f"{account.code} has no open invoice for {', '.join(missing)}",
                details={"invoice_periods": missing},
            )
        ordered = [by_label[label] for label in wanted]
    else:
        # Open debts first, oldest first; written-off ones only after them (a recovery).
        ordered = sorted(
            open_invoices,
            key=lambda inv: (inv.status == InvoiceStatus.WRITTEN_OFF, inv.due_date, inv.number or ""),
        )
    remaining = payment.amount
    for invoice in ordered:
        if remaining <= 0:
            break
        if invoice.status == InvoiceStatus.WRITTEN_OFF:
            from settlement.services.provisioning import write_off_recover

            share = min(remaining, invoice.written_off_amount)
            if share <= 0:
                continue
            write_off_recover(invoice=invoice, payment=payment, amount=share, at=at)
        else:
            share = min(remaining, invoice.open_amount)
            if share <= 0:
                continue
        _apply(payment=payment, invoice=invoice, amount=share, at=at)
        remaining -= share
    return payment.amount - remaining


def _apply(*, payment: Payment, invoice: Invoice, amount: Decimal, at: datetime) -> None:
    PaymentAllocation.objects.create(payment=payment, invoice=invoice, amount=amount, allocated_at=at)
    invoice.paid_amount += amount
    invoice_status_settle(invoice)
    invoice.save(update_fields=["paid_amount", "status", "updated_at"])


def _payment_post(*, payment: Payment, account: Any, allocated: Decimal) -> None:
    cur, cp = payment.currency, f"account:{account.code}"
    excess = payment.amount - allocated
    issuer_legs: list[Leg] = [debit("cash", payment.amount, cur, cp)]
    if allocated > 0:
        issuer_legs.append(credit("receivables", allocated, cur, cp))
    if excess > 0:
        issuer_legs.append(credit("customer_deposits", excess, cur, cp))
    key = f"payment:{payment.pk}"
    description = f"Payment {payment.reference} from {account.code}"
    entry_post(
        book=payment.payee_book,
        idempotency_key=key,
        occurred_at=payment.received_at,
        legs=issuer_legs,
        description=description,
        source_type="payment",
        source_id=str(payment.pk),
    )
    if account.own_book_id is not None:
        upstream = upstream_counterparty(account)
        payer_legs: list[Leg] = [credit("cash", payment.amount, cur, upstream)]
        if allocated > 0:
            payer_legs.append(debit("upstream_payables", allocated, cur, upstream))
        if excess > 0:
            payer_legs.append(debit("upstream_prepayments", excess, cur, upstream))
        entry_post(
            book=account.own_book,
            idempotency_key=key,
            occurred_at=payment.received_at,
            legs=payer_legs,
            description=f"Payment {payment.reference} to {upstream}",
            source_type="payment",
            source_id=str(payment.pk),
        )


def credit_balance(*, account: Any) -> Decimal:
    """Payments not yet applied to any invoice: the account's credit balance with its parent."""
    paid = Payment.objects.filter(account=account).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    applied = PaymentAllocation.objects.filter(payment__account=account).aggregate(s=Sum("amount"))[
        "s"
    ] or Decimal(0)
    return paid - applied


def credit_balance_apply(*, account: Any, invoice: Invoice, now: datetime) -> Decimal:
    """Consume the account's credit balance against a newly issued invoice (oldest payment first)
    and move it from deposits to receivables in both books. Returns the amount applied."""
    payments = list(Payment.objects.filter(account=account).order_by("pk").select_for_update())
    if not payments:
        return Decimal(0)
    applied_by_payment = dict(
        PaymentAllocation.objects.filter(payment__in=payments)
        .values("payment_id")
        .annotate(s=Sum("amount"))
        .values_list("payment_id", "s")
    )
    applied = Decimal(0)
    for payment in payments:
        free = payment.amount - (applied_by_payment.get(payment.pk) or Decimal(0))
        share = min(free, invoice.open_amount)
        if share <= 0:
            continue
        _apply(payment=payment, invoice=invoice, amount=share, at=now)
        applied += share
    if applied > 0:
        cur, cp = invoice.currency, f"account:{account.code}"
        key = f"credit-applied:{invoice.pk}"
        entry_post(
            book=invoice.issuer_book,
            idempotency_key=key,
            occurred_at=now,
            legs=[debit("customer_deposits", applied, cur, cp), credit("receivables", applied, cur, cp)],
            description=f"Credit balance of {account.code} applied to {invoice.number}",
            source_type="invoice",
            source_id=str(invoice.pk),
        )
        if account.own_book_id is not None:
            upstream = upstream_counterparty(account)
            entry_post(
                book=account.own_book,
                idempotency_key=key,
                occurred_at=now,
                legs=[
                    debit("upstream_payables", applied, cur, upstream),
                    credit("upstream_prepayments", applied, cur, upstream),
                ],
                description=f"Credit balance at {upstream} applied to {invoice.number}",
                source_type="invoice",
                source_id=str(invoice.pk),
            )
    return applied
