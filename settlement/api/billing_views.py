"""Invoices over the API (§1): the key's own invoices as a list and CSV (kept unpaginated: the
first published shape), and any invoice of the key's subtree by number, as JSON or PDF. The
paginated, filterable list per account is /accounts/{code}/invoices (reseller_views). An invoice
outside the subtree answers 404."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.common import ERRORS, MoneyOut, ResellerView, responses
from accounts.api.scoping import READ_SCOPE, scope_of
from distributor.errors import NotFound
from distributor.money import normalize, round_minor
from distributor.views import document_response
from settlement.billing_selectors import invoices_of_account
from settlement.models import Invoice, InvoiceLine, InvoiceStatus
from settlement.services.documents import invoice_pdf, invoices_csv


def _money(amount: Any, currency: str) -> dict[str, str]:
    return {"amount": normalize(round_minor(amount, currency)), "currency": currency}


def invoice_json(invoice: Invoice, *, lines: bool) -> dict[str, Any]:
    cur = invoice.currency
    body: dict[str, Any] = {
        "number": invoice.number,
        "issuer": invoice.issuer_book.code,
        "account": invoice.account.code,
        "period": invoice.label,
        "status": invoice.status,
        "issue_date": invoice.issue_date,
        "due_date": invoice.due_date,
        "subtotal": _money(invoice.subtotal, cur),
        "tax": _money(invoice.tax, cur),
        "total": _money(invoice.total, cur),
        "open": _money(invoice.open_amount, cur),
    }
    if lines:
        body["lines"] = [
            {
                "kind": ln.kind,
                "description": ln.description,
                "model": ln.model_code or None,
                "class": ln.token_class or None,
                "tokens": ln.tokens,
                "unit_price": None if ln.unit_price is None else normalize(ln.unit_price),
                "late": ln.late,
                "amount": _money(ln.amount, cur),
            }
            for ln in invoice.lines.all()
        ]
    return body


class InvoiceOut(serializers.Serializer):
    number = serializers.CharField()
    issuer = serializers.CharField()
    account = serializers.CharField()
    period = serializers.CharField()
    status = serializers.CharField()
    issue_date = serializers.DateField()
    due_date = serializers.DateField()
    subtotal = MoneyOut()
    tax = MoneyOut()
    total = MoneyOut()
    open = MoneyOut()


# `class` is a Python keyword, so the line's output fields are declared as a mapping.
InvoiceLineOut = type(
    "InvoiceLineOut",
    (serializers.Serializer,),
    {
        "kind": serializers.CharField(),
        "description": serializers.CharField(allow_blank=True),
        "model": serializers.CharField(allow_null=True),
        "class": serializers.CharField(allow_null=True, help_text="Token class"),
        "tokens": serializers.IntegerField(allow_null=True),
        "unit_price": serializers.CharField(allow_null=True, help_text="Per 1M tokens"),
        "late": serializers.BooleanField(),
        "amount": MoneyOut(),
    },
)


class InvoiceDetailOut(InvoiceOut):
    lines = InvoiceLineOut(many=True)


def _own_account(request: Request) -> Any:
    return scope_of(request, needs=READ_SCOPE).account


def _own_invoice(request: Request, number: str) -> Invoice:
    """An issued invoice owed by any account of the key's subtree (its own included)."""
    scope = scope_of(request, needs=READ_SCOPE)
    invoice = (
        Invoice.objects.filter(number=number, account__in=scope.account_ids())
        .exclude(status=InvoiceStatus.DRAFT)
        .select_related("account", "issuer_book")
        .prefetch_related(Prefetch("lines", queryset=InvoiceLine.objects.order_by("position")))
        .first()
    )
    if invoice is None:
        raise NotFound(f"no invoice {number!r}", details={"number": number})
    return invoice


class InvoiceListView(ResellerView):
    @extend_schema(
        operation_id="invoices_list", summary="Your invoices", responses=responses(InvoiceOut(many=True))
    )
    def get(self, request: Request) -> Response:
        invoices = invoices_of_account(account=_own_account(request))
        return Response([invoice_json(i, lines=False) for i in invoices])


class InvoiceDetailView(ResellerView):
    @extend_schema(
        operation_id="invoice_detail",
        summary="An invoice of your subtree, with lines",
        responses=responses(InvoiceDetailOut),
    )
    def get(self, request: Request, number: str) -> Response:
        return Response(invoice_json(_own_invoice(request, number), lines=True))


class InvoicePdfView(ResellerView):
    @extend_schema(
        operation_id="invoice_pdf",
        summary="One of your invoices as PDF",
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, **ERRORS},
    )
    def get(self, request: Request, number: str) -> HttpResponse:
        invoice = _own_invoice(request, number)
        return document_response(invoice_pdf(invoice=invoice), filename=f"{invoice.number}.pdf")


class InvoiceCsvView(ResellerView):
    @extend_schema(
        operation_id="invoices_csv",
        summary="Your invoices and lines as CSV",
        responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request: Request) -> HttpResponse:
        account = _own_account(request)
        return document_response(
            invoices_csv(invoices=invoices_of_account(account=account)),
            filename=f"invoices-{account.code}.csv",
        )
