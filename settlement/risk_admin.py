"""Finance's risk screens: the provision matrix (a change is a new version made through the
service, never an edit), provisioning runs, exposure snapshots and write-offs (read-only: they are
made by the jobs and by the "write off" action on invoices)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from distributor.errors import ApplicationError
from settlement.admin_base import ReadOnlyAdmin
from settlement.models import ExposureSnapshot, ProvisionMatrix, ProvisionRate, ProvisionRun, WriteOff
from settlement.risk_selectors import DEFAULT_EDGES, EXPOSURE_FIELDS


class ProvisionMatrixForm(forms.ModelForm):
    """A new version: edges as "0, 30, 60, 90, 180" and one "bucket: rate" per line."""

    edges_text = forms.CharField(
        label="Edges (days past due)", initial=", ".join(str(e) for e in DEFAULT_EDGES)
    )
    rates_text = forms.CharField(
        label="Rates",
        widget=forms.Textarea(attrs={"rows": 7}),
        help_text='One bucket per line, e.g. "31-60: 0.05" (rates between 0 and 1).',
    )
    user: Any = None

    class Meta:
        model = ProvisionMatrix
        fields = ["book", "effective_from"]

    def clean(self) -> dict[str, Any]:
        from settlement.services.provisioning import provision_matrix_set

        data = super().clean() or {}
        if self.errors:
            return data
        try:
            edges = [
                int(part) for part in str(data.get("edges_text", "")).replace(" ", "").split(",") if part
            ]
        except ValueError:
            raise forms.ValidationError("edges are whole numbers of days separated by commas") from None
        rates: dict[str, Decimal] = {}
        for line in str(data.get("rates_text", "")).splitlines():
            if not line.strip():
                continue
            bucket, sep, rate = line.partition(":")
            if not sep:
                raise forms.ValidationError(f'write each rate as "bucket: rate", not {line!r}')
            try:
                rates[bucket.strip()] = Decimal(rate.strip())
            except ArithmeticError:
                raise forms.ValidationError(f"{rate.strip()!r} is not a rate") from None
        try:
            self.instance = provision_matrix_set(
                book=data["book"],
                rates=rates,
                effective_from=data["effective_from"],
                edges=edges,
                by=self.user,
            )
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data


class ProvisionRateInline(admin.TabularInline):
    model = ProvisionRate
    extra = 0
    fields = ("position", "bucket", "rate")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProvisionMatrix)
class ProvisionMatrixAdmin(admin.ModelAdmin):
    list_display = ("book", "version", "effective_from", "edges", "created_by", "created_at")
    list_filter = ("book",)
    list_select_related = ("book", "created_by")
    form = ProvisionMatrixForm
    inlines = [ProvisionRateInline]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        form = super().get_form(request, obj, change=change, **kwargs)
        # The version records who made it: the form hands the user to the service.
        return type(form.__name__, (form,), {"user": request.user})

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["book", "effective_from", "edges_text", "rates_text"]
        return ["book", "version", "effective_from", "edges", "created_by", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (
            [] if obj is None else ["book", "version", "effective_from", "edges", "created_by", "created_at"]
        )

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return [ProvisionRateInline] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The form's clean() already made the version through the service (audited by created_by).
        return None

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewable, never edited: a change is a new version (add).
        return obj is None and super().has_view_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProvisionRun)
class ProvisionRunAdmin(ReadOnlyAdmin):
    list_display = (
        "book",
        "label",
        "currency",
        "receivables",
        "required",
        "balance_before",
        "change",
        "matrix",
        "as_of",
    )
    list_filter = ("book", "currency")


@admin.register(ExposureSnapshot)
class ExposureSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("book", "currency", "day", *EXPOSURE_FIELDS)
    list_filter = ("book", "currency")
    date_hierarchy = "day"


@admin.register(WriteOff)
class WriteOffAdmin(ReadOnlyAdmin):
    list_select_related = ("invoice", "book", "by")
    list_display = (
        "invoice",
        "book",
        "amount",
        "currency",
        "against_allowance",
        "expensed",
        "recovered",
        "at",
        "by",
        "reason",
    )
    list_filter = ("book", "currency")
    search_fields = ("invoice__number", "reason")
    date_hierarchy = "at"
