"""Finance's billing screens: invoices (issue, PDF, CSV), credit notes, payments, statements, close
runs and manual charges. Everything writes through the services; nothing issued is editable here."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from distributor.errors import ApplicationError
from distributor.views import document_response
from settlement.admin_base import ReadOnlyAdmin
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


class RecordForm(forms.ModelForm):
    """An add form whose valid data goes to a service (`record`); the service's refusal is a form
    error, and the row is written by the service with an audit record naming the user."""

    request: HttpRequest
    result: Any = None

    def record(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            self.result = self.record(data)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data

    def _post_clean(self) -> None:
        pass  # the service validated and wrote the row; the half-filled instance must not be checked


class RecordAdmin(ReadOnlyAdmin):
    """Add through the form's service call (finance_clerk); rows are never edited or deleted here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_add_permission(self, request)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        return form.result if form.result is not None else form.instance

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else []


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
class InvoiceAdmin(ReadOnlyAdmin):
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
    actions = ["issue_selected", "export_csv", "write_off_selected"]
    # Fast at 100,000+ invoices: no COUNT(*) of the whole table on every page, joins selected.
    list_per_page = 50
    show_full_result_count = False
    list_select_related = ("account", "issuer_book")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewable (with the inline), never editable: every change goes through a service. On the
        # list, "change" is the right to issue drafts (finance_clerk), so it follows the user's perms.
        return obj is None and admin.ModelAdmin.has_change_permission(self, request, obj)

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
        return document_response(
            invoice_pdf(invoice=invoice), filename=f"{invoice.number or 'draft-' + str(pk)}.pdf", inline=True
        )

    @admin.action(description="Issue the selected drafts now", permissions=["change"])
    def issue_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        from accounts.services import audit_record
        from settlement.services.invoicing import invoice_issue

        now = timezone.now()
        for invoice in queryset.filter(status="draft").order_by("period_start", "account_id"):
            try:
                # The issue and its audit row (who issued it) commit together.
                with transaction.atomic():
                    issued = invoice_issue(invoice=invoice, now=now)
                    audit_record(
                        actor=request.user,  # type: ignore[arg-type]
                        action="invoice.issue",
                        obj=issued,
                        before={"status": "draft"},
                        after={"status": issued.status, "number": issued.number, "total": issued.total},
                    )
                self.message_user(request, f"Issued {issued.number}")
            except ApplicationError as exc:
                self.message_user(request, f"{invoice}: {exc.message}", level=messages.ERROR)

    def has_write_off_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("settlement.write_off_invoice")

    @admin.action(description="Write off the open amount of the selected invoices", permissions=["write_off"])
    def write_off_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        from settlement.services.provisioning import invoice_write_off

        now = timezone.now()
        for invoice in queryset.order_by("pk"):
            try:
                done = invoice_write_off(
                    invoice=invoice, by=request.user, at=now, reason=f"admin action by {request.user}"
                )
                self.message_user(request, f"Wrote off {done.amount} {done.currency} of {invoice}")
            except ApplicationError as exc:
                self.message_user(request, f"{invoice}: {exc.message}", level=messages.ERROR)

    @admin.action(description="Export the selected invoices and lines as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse:
        invoices = queryset.select_related("account", "issuer_book").prefetch_related("lines")
        return document_response(invoices_csv(invoices=invoices), filename="invoices.csv")


class CreditNoteForm(RecordForm):
    amount = forms.DecimalField(
        max_digits=20, decimal_places=2, help_text="Tax included; at most the open amount"
    )
    # Made when the form is drawn: submitting the same form twice makes one credit note, not two.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, initial=lambda: f"admin:{uuid.uuid4()}")

    class Meta:
        model = CreditNote
        fields = ["invoice", "reason"]

    def record(self, data: dict[str, Any]) -> Any:
        from accounts.services import audit_record
        from settlement.services.credit_notes import credit_note_issue

        key = data["idempotency_key"]
        replayed = CreditNote.objects.filter(invoice=data["invoice"], idempotency_key=key).exists()
        note = credit_note_issue(
            invoice=data["invoice"],
            amount=data["amount"],
            reason=data["reason"],
            now=timezone.now(),
            idempotency_key=key,
        )
        if replayed:
            return note  # a resubmitted form: the note and its audit row exist already
        audit_record(
            actor=self.request.user,  # type: ignore[arg-type]
            action="credit_note.issue",
            obj=note,
            before=None,
            after={"invoice": str(data["invoice"]), "total": note.total, "reason": note.reason},
        )
        return note


@admin.register(CreditNote)
class CreditNoteAdmin(RecordAdmin):
    form = CreditNoteForm
    list_display = ("number", "invoice", "reason", "total", "currency", "issue_date")
    search_fields = ("number", "invoice__number")
    list_select_related = ("invoice",)
    show_full_result_count = False
    raw_id_fields = ("invoice",)  # a dropdown of every invoice would not scale


class AllocationInline(admin.TabularInline):
    model = PaymentAllocation
    extra = 0
    readonly_fields = ("invoice", "amount", "allocated_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PaymentForm(RecordForm):
    periods = forms.CharField(
        required=False,
        help_text="Invoice periods it pays, comma-separated (2026-10, 2026-Q4); empty: oldest first",
    )

    class Meta:
        model = Payment
        fields = ["account", "amount", "received_at", "reference"]

    def record(self, data: dict[str, Any]) -> Any:
        from accounts.services import audit_record
        from settlement.services.payments import payment_record

        account = data["account"]
        payment = payment_record(
            account=account,
            amount=data["amount"],
            currency=account.currency,
            received_at=data["received_at"],
            reference=data["reference"],
            invoice_periods=[p.strip() for p in (data.get("periods") or "").split(",") if p.strip()],
        )
        audit_record(
            actor=self.request.user,  # type: ignore[arg-type]
            action="payment.record",
            obj=payment,
            before=None,
            after={"account": account.code, "amount": payment.amount, "reference": payment.reference},
        )
        return payment


@admin.register(Payment)
class PaymentAdmin(RecordAdmin):
    form = PaymentForm
    list_display = ("reference", "account", "amount", "currency", "received_at")
    search_fields = ("reference", "account__code")
    inlines = [AllocationInline]
    show_full_result_count = False
    list_select_related = ("account",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and admin.ModelAdmin.has_change_permission(self, request, obj)


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = ("account", "label", "opening", "topups", "usage", "closing", "currency", "pdf")
    list_filter = ("label", "book")
    list_select_related = ("account",)
    show_full_result_count = False

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
class CloseRunAdmin(ReadOnlyAdmin):
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


class ManualChargeForm(RecordForm):
    class Meta:
        model = ManualCharge
        fields = ["account", "description", "amount", "at", "reference"]

    def record(self, data: dict[str, Any]) -> Any:
        from accounts.services import audit_record
        from settlement.services.invoicing import manual_charge_record

        charge = manual_charge_record(
            account=data["account"],
            description=data["description"],
            amount=data["amount"],
            at=data["at"],
            reference=data.get("reference") or "",
        )
        audit_record(
            actor=self.request.user,  # type: ignore[arg-type]
            action="manual_charge.record",
            obj=charge,
            before=None,
            after={
                "account": data["account"].code,
                "amount": charge.amount,
                "description": charge.description,
            },
        )
        return charge


@admin.register(ManualCharge)
class ManualChargeAdmin(RecordAdmin):
    form = ManualChargeForm
    list_display = ("account", "description", "amount", "currency", "at", "invoice")
    search_fields = ("account__code", "description")
    list_select_related = ("account", "invoice")
