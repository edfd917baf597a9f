"""The reseller API's billing reads (§7) for any account of the key's subtree: usage summaries,
invoices, credit notes, statements, payments made and received. Every account is found through
accounts.api.scoping; a code outside the subtree answers 404."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.common import ERRORS, MoneyOut, ResellerListView, ResellerView, money, responses
from accounts.api.scoping import MANAGE_SCOPE, scope_of
from distributor.errors import NotFound, PermissionRefused, ValidationFailed
from distributor.views import document_response
from settlement.api.billing_views import InvoiceOut, invoice_json
from settlement.api.selectors import USAGE_GROUPS, usage_summary
from settlement.models import CreditNote, Invoice, InvoiceStatus, Payment, PeriodKind, Statement
from settlement.services.documents import credit_note_pdf, invoices_csv, statement_pdf
from settlement.services.invoicing import manual_charge_record
from settlement.services.payments import payment_record

# --- usage -------------------------------------------------------------------------------------


class UsageRowOut(serializers.Serializer):
    period = serializers.CharField(allow_null=True, help_text="2026-10, when grouped by period")
    day = serializers.DateField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    token_class = serializers.CharField(allow_null=True)
    account = serializers.CharField(allow_null=True, help_text="A direct child, when grouped by account")
    tokens = serializers.IntegerField()
    amount = MoneyOut(help_text="Exact (10 places), not rounded")


class UsageOut(serializers.Serializer):
    account = serializers.CharField()
    group_by = serializers.ListField(child=serializers.CharField())
    rows = UsageRowOut(many=True)


class UsageQuery(serializers.Serializer):
    group_by = serializers.CharField(required=False, default="model")
    day_from = serializers.DateField(required=False)
    day_to = serializers.DateField(required=False)

    def validate_group_by(self, value: str) -> list[str]:
        groups = [g for g in (part.strip() for part in value.split(",")) if g]
        unknown = [g for g in groups if g not in USAGE_GROUPS]
        if unknown or not groups:
            raise serializers.ValidationError(f"group by one or more of {', '.join(USAGE_GROUPS)}")
        return groups


class UsageSummaryView(ResellerView):
    @extend_schema(
        operation_id="usage_summary",
        summary="Usage by period, day, model, token class or child account (from rollups)",
        description=(
            "Without `account` in group_by: what this account owes its parent for its whole subtree's "
            "calls. With `account`: what each direct child owes this account."
        ),
        parameters=[
            OpenApiParameter("group_by", str, description=f"Comma-separated: {', '.join(USAGE_GROUPS)}"),
            OpenApiParameter("day_from", OpenApiTypes.DATE, description="First day, inclusive"),
            OpenApiParameter("day_to", OpenApiTypes.DATE, description="Last day, inclusive"),
        ],
        responses=responses(UsageOut),
    )
    def get(self, request: Request, code: str) -> Response:
        account = scope_of(request).find(code)
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        day_from, day_to = params.get("day_from"), params.get("day_to")
        if day_from and day_to and day_from > day_to:
            raise ValidationFailed("day_from is after day_to", details={"day_from": str(day_from)})
        rows = usage_summary(account=account, group_by=params["group_by"], day_from=day_from, day_to=day_to)
        for row in rows:
            row["amount"] = money(row["amount"], account.currency, exact=True)
        return Response({"account": account.code, "group_by": params["group_by"], "rows": rows})


# --- invoices ----------------------------------------------------------------------------------


class InvoiceFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=[c for c in InvoiceStatus.choices if c[0] != "draft"])
    period = django_filters.CharFilter(field_name="label", help_text="2026-10 or 2026-Q4")
    period_kind = django_filters.ChoiceFilter(choices=PeriodKind.choices)
    issued_from = django_filters.DateFilter(field_name="issue_date", lookup_expr="gte")
    issued_to = django_filters.DateFilter(field_name="issue_date", lookup_expr="lte")
    due_to = django_filters.DateFilter(field_name="due_date", lookup_expr="lte")

    class Meta:
        model = Invoice
        fields = ["status", "period", "period_kind", "issued_from", "issued_to", "due_to"]


def scoped_invoices(request: Request) -> QuerySet[Invoice]:
    """Issued invoices owed by any account of the key's subtree (drafts are not money yet)."""
    return (
        Invoice.objects.filter(account__in=scope_of(request).account_ids())
        .exclude(status=InvoiceStatus.DRAFT)
        .select_related("account", "issuer_book")
    )


class AccountInvoiceListView(ResellerListView):
    queryset = Invoice.objects.none()  # for the schema; get_queryset scopes every request
    filterset_class = InvoiceFilter
    ordering_fields = ["period_start", "issue_date", "due_date", "total", "number"]
    ordering = ["-period_start", "number"]

    def get_queryset(self) -> QuerySet[Invoice]:
        account = scope_of(self.request).find(self.kwargs["code"])
        return scoped_invoices(self.request).filter(account=account)

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:  # type: ignore[type-arg]
        return InvoiceOut

    @extend_schema(
        operation_id="account_invoices_list", summary="The invoices an account of your subtree owes"
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None
        return self.get_paginated_response([invoice_json(i, lines=False) for i in page])


class AccountInvoiceCsvView(ResellerView):
    @extend_schema(
        operation_id="account_invoices_csv",
        summary="An account's invoices and their lines as CSV",
        responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request: Request, code: str) -> HttpResponse:
        account = scope_of(request).find(code)
        invoices = (
            scoped_invoices(request)
            .filter(account=account)
            .prefetch_related("lines")
            .order_by("period_start")
        )
        return document_response(invoices_csv(invoices=invoices), filename=f"invoices-{account.code}.csv")


# --- credit notes ------------------------------------------------------------------------------


class CreditNoteOut(serializers.Serializer):
    number = serializers.CharField()
    invoice = serializers.CharField()
    account = serializers.CharField()
    issuer = serializers.CharField()
    reason = serializers.CharField()
    issue_date = serializers.DateField()
    subtotal = MoneyOut()
    tax = MoneyOut()
    total = MoneyOut()


def credit_note_json(note: CreditNote) -> dict[str, Any]:
    cur = note.currency
    return {
        "number": note.number,
        "invoice": note.invoice.number,
        "account": note.invoice.account.code,
        "issuer": note.issuer_book.code,
        "reason": note.reason,
        "issue_date": note.issue_date,
        "subtotal": money(note.subtotal, cur),
        "tax": money(note.tax, cur),
        "total": money(note.total, cur),
    }


def scoped_credit_notes(request: Request) -> QuerySet[CreditNote]:
    return CreditNote.objects.filter(invoice__account__in=scope_of(request).account_ids()).select_related(
        "invoice__account", "issuer_book"
    )


class CreditNoteFilter(django_filters.FilterSet):
    invoice = django_filters.CharFilter(field_name="invoice__number")
    issued_from = django_filters.DateFilter(field_name="issue_date", lookup_expr="gte")
    issued_to = django_filters.DateFilter(field_name="issue_date", lookup_expr="lte")

    class Meta:
        model = CreditNote
        fields = ["invoice", "issued_from", "issued_to"]


class AccountCreditNoteListView(ResellerListView):
    queryset = CreditNote.objects.none()  # for the schema; get_queryset scopes every request
    filterset_class = CreditNoteFilter
    ordering_fields = ["issued_at", "number", "total"]
    ordering = ["-issued_at", "number"]
    serializer_class = CreditNoteOut

    def get_queryset(self) -> QuerySet[CreditNote]:
        account = scope_of(self.request).find(self.kwargs["code"])
        return scoped_credit_notes(self.request).filter(invoice__account=account)

    @extend_schema(operation_id="account_credit_notes_list", summary="Credit notes on an account's invoices")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None
        return self.get_paginated_response([credit_note_json(n) for n in page])


class CreditNoteDetailView(ResellerView):
    @extend_schema(
        operation_id="credit_note_read", summary="One credit note", responses=responses(CreditNoteOut)
    )
    def get(self, request: Request, number: str) -> Response:
        note = scoped_credit_notes(request).filter(number=number).first()
        if note is None:
            raise NotFound(f"no credit note {number!r}", details={"number": number})
        return Response(credit_note_json(note))


class CreditNotePdfView(ResellerView):
    @extend_schema(
        operation_id="credit_note_pdf",
        summary="One credit note as PDF",
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, **ERRORS},
    )
    def get(self, request: Request, number: str) -> HttpResponse:
        note = (
            scoped_credit_notes(request)
            .select_related("invoice__account", "issuer_book")
            .filter(number=number)
            .first()
        )
        if note is None:
            raise NotFound(f"no credit note {number!r}", details={"number": number})
        return document_response(credit_note_pdf(note=note), filename=f"{note.number}.pdf")


class AccountCreditNoteCsvView(ResellerView):
    @extend_schema(
        operation_id="account_credit_notes_csv",
        summary="An account's credit notes as CSV",
        responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request: Request, code: str) -> HttpResponse:
        account = scope_of(request).find(code)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            [
                "number",
                "invoice",
                "account",
                "issuer",
                "issue_date",
                "reason",
                "subtotal",
                "tax",
                "total",
                "currency",
            ]
        )
        for note in scoped_credit_notes(request).filter(invoice__account=account).order_by("issued_at", "pk"):
            body = credit_note_json(note)
            writer.writerow(
                [
                    note.number,
                    body["invoice"],
                    body["account"],
                    body["issuer"],
                    note.issue_date.isoformat(),
                    note.reason,
                    body["subtotal"]["amount"],
                    body["tax"]["amount"],
                    body["total"]["amount"],
                    note.currency,
                ]
            )
        return document_response(buffer.getvalue(), filename=f"credit-notes-{account.code}.csv")


# --- statements --------------------------------------------------------------------------------


class StatementOut(serializers.Serializer):
    account = serializers.CharField()
    period = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    opening = MoneyOut()
    topups = MoneyOut()
    usage = MoneyOut()
    closing = MoneyOut()
    usage_by_model = serializers.DictField(child=MoneyOut())


def statement_json(statement: Statement) -> dict[str, Any]:
    cur = statement.currency
    return {
        "account": statement.account.code,
        "period": statement.label,
        "period_start": statement.period_start,
        "period_end": statement.period_end,
        "opening": money(statement.opening, cur),
        "topups": money(statement.topups, cur),
        "usage": money(statement.usage, cur),
        "closing": money(statement.closing, cur),
        "usage_by_model": {
            model: money(Decimal(str(amount)), cur)
            for model, amount in sorted(statement.usage_by_model.items())
        },
    }


class AccountStatementListView(ResellerListView):
    queryset = Statement.objects.none()  # for the schema; get_queryset scopes every request
    serializer_class = StatementOut
    filterset_fields = ["label"]
    ordering_fields = ["period_start"]
    ordering = ["-period_start"]

    def get_queryset(self) -> QuerySet[Statement]:
        account = scope_of(self.request).find(self.kwargs["code"])
        return Statement.objects.filter(account=account).select_related("account")

    @extend_schema(operation_id="account_statements_list", summary="A prepaid account's monthly statements")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None
        return self.get_paginated_response([statement_json(s) for s in page])


class AccountStatementPdfView(ResellerView):
    @extend_schema(
        operation_id="account_statement_pdf",
        summary="A statement as PDF",
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, **ERRORS},
    )
    def get(self, request: Request, code: str, period: str) -> HttpResponse:
        account = scope_of(request).find(code)
        statement = (
            Statement.objects.filter(account=account, label=period).select_related("account", "book").first()
        )
        if statement is None:
            raise NotFound(
                f"no statement {period!r} for {code!r}", details={"account": code, "period": period}
            )
        return document_response(
            statement_pdf(statement=statement), filename=f"statement-{account.code}-{statement.label}.pdf"
        )


# --- payments ----------------------------------------------------------------------------------


class AllocationOut(serializers.Serializer):
    invoice = serializers.CharField()
    amount = MoneyOut()


class PaymentOut(serializers.Serializer):
    id = serializers.IntegerField()
    account = serializers.CharField(help_text="Who paid")
    payee = serializers.CharField(help_text="The book that received it")
    reference = serializers.CharField()
    received_at = serializers.DateTimeField()
    amount = MoneyOut()
    unapplied = MoneyOut(help_text="Not yet applied to an invoice: credit balance")
    allocations = AllocationOut(many=True)


def payment_json(payment: Payment) -> dict[str, Any]:
    cur = payment.currency
    allocations = list(payment.allocations.all())
    applied = sum((a.amount for a in allocations), Decimal(0))
    return {
        "id": payment.pk,
        "account": payment.account.code,
        "payee": payment.payee_book.code,
        "reference": payment.reference,
        "received_at": payment.received_at,
        "amount": money(payment.amount, cur),
        "unapplied": money(payment.amount - applied, cur),
        "allocations": [{"invoice": a.invoice.number, "amount": money(a.amount, cur)} for a in allocations],
    }


class PaymentFilter(django_filters.FilterSet):
    received_from = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_to = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lte")
    payer = django_filters.CharFilter(field_name="account__code")

    class Meta:
        model = Payment
        fields = ["received_from", "received_to", "payer"]


class _PaymentListView(ResellerListView):
    queryset = Payment.objects.none()  # for the schema; get_queryset scopes every request
    serializer_class = PaymentOut
    filterset_class = PaymentFilter
    ordering_fields = ["received_at", "amount", "id"]
    ordering = ["-received_at", "-id"]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None
        return self.get_paginated_response([payment_json(p) for p in page])


def _payments() -> QuerySet[Payment]:
    return Payment.objects.select_related("account", "payee_book").prefetch_related("allocations__invoice")


class PaymentIn(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=20, decimal_places=2, min_value=Decimal("0.01"))
    currency = serializers.CharField(max_length=3, min_length=3)
    reference = serializers.CharField(max_length=200)
    received_at = serializers.DateTimeField(required=False)
    invoices = serializers.ListField(
        child=serializers.CharField(max_length=16), required=False, allow_empty=False, max_length=100
    )


class ChargeIn(serializers.Serializer):
    description = serializers.CharField(max_length=300)
    amount = serializers.DecimalField(max_digits=20, decimal_places=2, min_value=Decimal("0.01"))
    at = serializers.DateTimeField(required=False)
    reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class ChargeOut(serializers.Serializer):
    id = serializers.IntegerField()
    account = serializers.CharField()
    description = serializers.CharField()
    amount = MoneyOut()
    at = serializers.DateTimeField()


def _own_child(request: Request, code: str) -> Any:
    """A direct child of the key's account, which the key (scope `manage`) bills: payments from it
    and charges to it are the parent's to record."""
    scope = scope_of(request, needs=MANAGE_SCOPE)
    account = scope.find_below(code)
    if account.parent_id != scope.account.pk:
        raise PermissionRefused(
            f"{code!r} is billed by its own parent, who records its payments and charges",
            details={"account": code},
        )
    return account


class PaymentsMadeView(_PaymentListView):
    def get_queryset(self) -> QuerySet[Payment]:
        account = scope_of(self.request).find(self.kwargs["code"])
        return _payments().filter(account=account)

    @extend_schema(operation_id="account_payments_made", summary="Payments an account made to its parent")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="account_payment_record",
        summary="Record a payment received from a child",
        description=(
            "The parent records what its direct child paid. The reference is unique per payer: the "
            "same payment again returns the first one; other figures under it are a 409. Allocated to "
            "the named invoice periods, else oldest first; any excess is kept as a credit balance."
        ),
        request=PaymentIn,
        responses=responses(PaymentOut, write=True, status=201),
    )
    def post(self, request: Request, code: str) -> Response:
        account = _own_child(request, code)
        data = PaymentIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        payment = payment_record(
            account=account,
            amount=fields["amount"],
            currency=fields["currency"],
            received_at=fields.get("received_at") or timezone.now(),
            reference=fields["reference"],
            invoice_periods=fields.get("invoices"),
        )
        return Response(payment_json(_payments().get(pk=payment.pk)), status=status.HTTP_201_CREATED)


class AccountChargeView(ResellerView):
    @extend_schema(
        operation_id="account_charge_record",
        summary="Put a manual charge on a child's next invoice",
        description=(
            "Enterprise services and the like, billed on the child's invoice of the period containing "
            "`at` (default now), or the next open period if that one is already issued."
        ),
        request=ChargeIn,
        responses=responses(ChargeOut, write=True, status=201),
    )
    def post(self, request: Request, code: str) -> Response:
        account = _own_child(request, code)
        data = ChargeIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        at = fields.get("at") or timezone.now()
        charge = manual_charge_record(
            account=account,
            description=fields["description"],
            amount=fields["amount"],
            at=at,
            reference=fields["reference"],
        )
        body = {
            "id": charge.pk,
            "account": account.code,
            "description": charge.description,
            "amount": money(charge.amount, account.currency),
            "at": at,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class PaymentsReceivedView(_PaymentListView):
    def get_queryset(self) -> QuerySet[Payment]:
        scope = scope_of(self.request)
        account = scope.find(self.kwargs["code"])
        # Received in its own book means paid by its children, who are in the scope too.
        return _payments().filter(payee_book_id=account.own_book_id, account__in=scope.account_ids())

    @extend_schema(
        operation_id="account_payments_received", summary="Payments an account received from its children"
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
