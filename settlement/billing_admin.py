"""Finance's billing screens: invoices (issue, PDF, CSV), credit notes, payments, statements, close
runs and manual charges. Everything writes through the services; nothing issued is editable here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from distributor.errors import ApplicationError
from settlement.models import (
    CloseRun,
    CreditNote,
    Invoice,
    InvoiceLine,
    ManualCharge,
    Payment,
    PaymentAllocation,
    Statement,
)
from settlement.services.documents import invoice_pdf, invoices_csv, statement_pdf


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    fields = (
        "position",
        "kind",
        "description",
        "model_code",
        "token_class",
        "tokens",
        "unit_price",
        "late",
        "amount",
    )
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnly):
    list_display = (
        "__str__",
        "account",
        "issuer_book",
        "label",
        "status",
        "total",
        "currency",
        "due_date",
        "pdf",
    )
    list_filter = ("status", "issuer_book", "period_kind", "label")
    search_fields = ("number", "account__code")
    inlines = [InvoiceLineInline]
    actions = ["issue_selected", "export_csv"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewable (with the inline), never editable: every change goes through a service.
        return obj is None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invoice]:
        return super().get_queryset(request).select_related("account", "issuer_book")

    @admin.display(description="PDF")
    def pdf(self, obj: Invoice) -> str:
        return format_html('<a href="{}">PDF</a>', reverse("admin:settlement_invoice_pdf", args=[obj.pk]))

    def get_urls(self) -> list[Any]:
        extra = [
            path("<int:pk>/pdf/", self.admin_site.admin_view(self.pdf_view), name="settlement_invoice_pdf")
        ]
        return extra + super().get_urls()

    def pdf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        invoice = Invoice.objects.select_related("account", "issuer_book").get(pk=pk)
        response = HttpResponse(invoice_pdf(invoice=invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{invoice.number or "draft-" + str(pk)}.pdf"'
        return response

    @admin.action(description="Issue the selected drafts now")
    def issue_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        from settlement.services.invoicing import invoice_issue

        now = timezone.now()
        for invoice in queryset.filter(status="draft").order_by("period_start", "account_id"):
            try:
                issued = invoice_issue(invoice=invoice, now=now)
                self.message_user(request, f"Issued {issued.number}")
            except ApplicationError as exc:
                self.message_user(request, f"{invoice}: {exc.message}", level=messages.ERROR)

    @admin.action(description="Export the selected invoices and lines as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse:
        invoices = queryset.select_related("account", "issuer_book").prefetch_related("lines")
        response = HttpResponse(invoices_csv(invoices=invoices), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="invoices.csv"'
        return response


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnly):
    list_display = ("number", "invoice", "reason", "total", "currency", "issue_date")
    search_fields = ("number", "invoice__number")


class AllocationInline(admin.TabularInline):
    model = PaymentAllocation
    extra = 0
    readonly_fields = ("invoice", "amount", "allocated_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnly):
    list_display = ("reference", "account", "amount", "currency", "received_at")
    search_fields = ("reference", "account__code")
    inlines = [AllocationInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None


@admin.register(Statement)
class StatementAdmin(ReadOnly):
    list_display = ("account", "label", "opening", "topups", "usage", "closing", "currency", "pdf")
    list_filter = ("label", "book")

    @admin.display(description="PDF")
    def pdf(self, obj: Statement) -> str:
        return format_html('<a href="{}">PDF</a>', reverse("admin:settlement_statement_pdf", args=[obj.pk]))

    def get_urls(self) -> list[Any]:
        extra = [
            path("<int:pk>/pdf/", self.admin_site.admin_view(self.pdf_view), name="settlement_statement_pdf")
        ]
        return extra + super().get_urls()

    def pdf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        statement = Statement.objects.select_related("account", "book").get(pk=pk)
        return HttpResponse(statement_pdf(statement=statement), content_type="application/pdf")


@admin.register(CloseRun)
class CloseRunAdmin(ReadOnly):
    list_display = (
        "book",
        "label",
        "status",
        "last_account_id",
        "invoices_drafted",
        "statements_drawn",
        "run_at",
    )
    list_filter = ("status", "book")


@admin.register(ManualCharge)
class ManualChargeAdmin(ReadOnly):
    list_display = ("account", "description", "amount", "currency", "at", "invoice")
    search_fields = ("account__code", "description")
