"""The account's own invoices over the API (§1): list, detail, PDF and CSV. Scoped to the API
key's account; another account's invoice number answers 404."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from distributor.errors import NotFound, PermissionRefused
from distributor.money import normalize, round_minor
from settlement.billing_selectors import invoices_of_account
from settlement.models import Invoice
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


class MoneyOut(serializers.Serializer):
    amount = serializers.CharField()
    currency = serializers.CharField()


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


READ_SCOPE = "read"


def _own_account(request: Request) -> Any:
    if READ_SCOPE not in (getattr(request.auth, "scopes", None) or []):
        raise PermissionRefused("this API key lacks the 'read' scope")
    account = getattr(request.auth, "account", None)
    if account is None:
        raise PermissionRefused("invoices are read with an account's own API key")
    return account


def _own_invoice(request: Request, number: str) -> Invoice:
    invoice = invoices_of_account(account=_own_account(request)).filter(number=number).first()
    if invoice is None:
        raise NotFound(f"no invoice {number!r}", details={"number": number})
    return invoice


class InvoiceListView(APIView):
    @extend_schema(
        operation_id="invoices_list", summary="Your invoices", responses={200: InvoiceOut(many=True)}
    )
    def get(self, request: Request) -> Response:
        invoices = invoices_of_account(account=_own_account(request))
        return Response([invoice_json(i, lines=False) for i in invoices])


class InvoiceDetailView(APIView):
    @extend_schema(
        operation_id="invoice_detail", summary="One of your invoices, with lines", responses={200: InvoiceOut}
    )
    def get(self, request: Request, number: str) -> Response:
        return Response(invoice_json(_own_invoice(request, number), lines=True))


class InvoicePdfView(APIView):
    @extend_schema(
        operation_id="invoice_pdf",
        summary="One of your invoices as PDF",
        responses={(200, "application/pdf"): bytes},
    )
    def get(self, request: Request, number: str) -> HttpResponse:
        invoice = _own_invoice(request, number)
        response = HttpResponse(invoice_pdf(invoice=invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
        return response


class InvoiceCsvView(APIView):
    @extend_schema(
        operation_id="invoices_csv",
        summary="Your invoices and lines as CSV",
        responses={(200, "text/csv"): str},
    )
    def get(self, request: Request) -> HttpResponse:
        account = _own_account(request)
        response = HttpResponse(
            invoices_csv(invoices=invoices_of_account(account=account)), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="invoices-{account.code}.csv"'
        return response
