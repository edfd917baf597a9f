"""Reads of billing: invoices, statements and payments, always scoped by the caller's account or
book, with their joins selected."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import Prefetch, QuerySet

from ledger.models import Book
from settlement.models import Invoice, InvoiceLine, InvoiceStatus, Payment, Statement


def _with_joins(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    return qs.select_related("account", "issuer_book").prefetch_related(
        Prefetch("lines", queryset=InvoiceLine.objects.order_by("position"))
    )


def invoices_of_account(*, account: Any, include_drafts: bool = False) -> QuerySet[Invoice]:
    """An account's own invoices (what it owes its parent), newest period first. Drafts are not
    shown to customers: they are not money until issued."""
    qs = Invoice.objects.filter(account=account)
    if not include_drafts:
        qs = qs.exclude(status=InvoiceStatus.DRAFT)
    return _with_joins(qs).order_by("-period_start")


def invoices_of_book(
    *, book: Book, period_start: date | None = None, period_kind: str | None = None
) -> QuerySet[Invoice]:
    """The invoices a book issued (drafts included), for finance and the CSV export."""
    qs = Invoice.objects.filter(issuer_book=book)
    if period_start is not None:
        qs = qs.filter(period_start=period_start)
    if period_kind is not None:
        qs = qs.filter(period_kind=period_kind)
    return _with_joins(qs).order_by("period_start", "number", "account__code")


def open_invoices(*, account: Any) -> QuerySet[Invoice]:
    return invoices_of_account(account=account).filter(
        status__in=(InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID)
    )


def statements_of_account(*, account: Any) -> QuerySet[Statement]:
    return (
        Statement.objects.filter(account=account).select_related("account", "book").order_by("-period_start")
    )


def payments_of_account(*, account: Any) -> QuerySet[Payment]:
    return (
        Payment.objects.filter(account=account)
        .select_related("account", "payee_book")
        .prefetch_related("allocations__invoice")
        .order_by("-received_at")
    )
