"""Finance staff's screens for the upstream side. Every write goes through procurement.services;
posted money (purchases, payments) and past price versions are read-only here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from distributor.errors import ApplicationError, ValidationFailed
from ledger.models import Book
from procurement.models import (
    ListPriceVersion,
    Provider,
    ProviderModel,
    QuotaPurchase,
    UpstreamPayment,
    UpstreamStatement,
)
from procurement.selectors import provider_cover, upstream_variance
from procurement.services import (
    list_price_set,
    provider_create,
    provider_model_create,
    provider_update,
    quota_purchase_record,
    upstream_payment_record,
    upstream_statement_import,
)


class _ServiceErrorsMixin:
    """Turn a business-rule failure raised in save_model into a message instead of a 500."""

    def _service(self, request: HttpRequest, call: Any) -> bool:
        try:
            call()
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return False
        return True


class ProviderModelInline(admin.TabularInline):
    model = ProviderModel
    extra = 0
    fields = ("code", "name")
    show_change_link = True
    can_delete = False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # model codes key usage and prices; add new ones, never rename


@admin.register(Provider)
class ProviderAdmin(_ServiceErrorsMixin, admin.ModelAdmin):
    list_display = ("code", "name", "currency", "low_cover_days")
    search_fields = ("code", "name")
    inlines = [ProviderModelInline]
    readonly_fields = ("cover",)

    def get_readonly_fields(self, request: HttpRequest, obj: Provider | None = None) -> tuple[str, ...]:
        # Code and currency key ledger counterparties and purchases: fixed once created.
        return ("code", "currency", "cover") if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Provider | None = None) -> Any:
        fields = ("code", "name", "currency", "low_cover_days")
        return (*fields, "cover") if obj is not None else fields

    @admin.display(description="Cover per book (now)")
    def cover(self, obj: Provider) -> str:
        now = timezone.now()
        books = Book.objects.filter(quota_purchases__provider=obj).distinct().order_by("code")
        rows = []
        for book in books:
            c = provider_cover(book=book, provider=obj, now=now)
            days = "no burn" if c.days_of_cover is None else f"{c.days_of_cover} days"
            alert = " - LOW COVER" if c.low_cover else ""
            rows.append(
                (
                    book.code,
                    f"{c.remaining_list:.2f}",
                    f"{c.remaining_cost:.2f}",
                    c.currency,
                    f"{c.daily_burn_list:.2f}",
                    days + alert,
                )
            )
        if not rows:
            return "No purchases yet."
        return format_html_join(
            "\n",
            "<div>{}: remaining {} at list / {} at cost {}; burn {} a day; cover {}</div>",
            rows,
        )

    def save_model(self, request: HttpRequest, obj: Provider, form: forms.ModelForm, change: bool) -> None:
        if change:
            provider_update(provider=obj, name=obj.name, low_cover_days=obj.low_cover_days)
            return
        created = provider_create(
            code=obj.code, name=obj.name, currency=obj.currency, low_cover_days=obj.low_cover_days
        )
        obj.pk = created.pk

    def save_formset(self, request: HttpRequest, form: Any, formset: BaseInlineFormSet, change: bool) -> None:
        # The service is the writer, not formset.save(); the change message still reads these.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if inline_form.instance.pk is None and inline_form.has_changed():
                data = inline_form.cleaned_data
                self._service(
                    request,
                    lambda d=data: provider_model_create(
                        provider=form.instance, code=d["code"], name=d.get("name", "")
                    ),
                )


class ListPriceVersionForm(forms.ModelForm):
    class Meta:
        model = ListPriceVersion
        fields = ("effective_from", "input", "cached_input", "cache_write", "output")


class ListPriceVersionInline(admin.TabularInline):
    """Add-only: existing versions are history and cannot be edited or deleted."""

    model = ListPriceVersion
    form = ListPriceVersionForm
    extra = 1
    can_delete = False
    ordering = ("-effective_from",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProviderModel)
class ProviderModelAdmin(_ServiceErrorsMixin, admin.ModelAdmin):
    list_display = ("code", "name", "provider")
    list_filter = ("provider",)
    search_fields = ("code", "name")
    inlines = [ListPriceVersionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: ProviderModel | None = None) -> tuple[str, ...]:
        return ("provider", "code") if obj is not None else ()

    def save_model(
        self, request: HttpRequest, obj: ProviderModel, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            ProviderModel.objects.filter(pk=obj.pk).update(name=obj.name)
            return
        created = provider_model_create(provider=obj.provider, code=obj.code, name=obj.name)
        obj.pk = created.pk

    def save_formset(self, request: HttpRequest, form: Any, formset: BaseInlineFormSet, change: bool) -> None:
        # The service is the writer, not formset.save(); the change message still reads these.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if inline_form.instance.pk is None and inline_form.has_changed():
                data = inline_form.cleaned_data
                prices = {
                    cls: data[cls]
                    for cls in ("input", "cached_input", "cache_write", "output")
                    if data.get(cls) is not None
                }
                self._service(
                    request,
                    lambda d=data, p=prices: list_price_set(
                        model=form.instance, effective_from=d["effective_from"], prices=p, now=timezone.now()
                    ),
                )


class QuotaPurchaseForm(forms.ModelForm):
    class Meta:
        model = QuotaPurchase
        fields = (
            "book",
            "provider",
            "paid",
            "credit",
            "currency",
            "purchased_at",
            "expires_on",
            "promotional",
            "reference",
        )


@admin.register(QuotaPurchase)
class QuotaPurchaseAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "book",
        "provider",
        "paid",
        "credit",
        "remaining_credit",
        "currency",
        "purchased_at",
        "expires_on",
        "promotional",
        "breakage_amount",
    )
    list_filter = ("book", "provider", "promotional")
    search_fields = ("reference", "provider__code")
    date_hierarchy = "purchased_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[QuotaPurchase]:
        return super().get_queryset(request).select_related("book", "provider")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = QuotaPurchaseForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: QuotaPurchase | None = None) -> Any:
        if obj is None:
            return ()
        return [f.name for f in QuotaPurchase._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: QuotaPurchase, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            return  # posted purchases are immutable
        created = quota_purchase_record(
            book=obj.book,
            provider=obj.provider,
            paid=obj.paid,
            credit=obj.credit,
            currency=obj.currency,
            purchased_at=obj.purchased_at,
            expires_on=obj.expires_on,
            promotional=obj.promotional,
            reference=obj.reference,
        )
        obj.pk = created.pk

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        return _guarded(self, request, super().add_view, form_url, extra_context)


@admin.register(UpstreamPayment)
class UpstreamPaymentAdmin(admin.ModelAdmin):
    list_display = ("reference", "book", "provider", "amount", "currency", "paid_at")
    list_filter = ("book", "provider")
    search_fields = ("reference",)
    fields = ("book", "provider", "amount", "currency", "paid_at", "reference")

    def get_readonly_fields(self, request: HttpRequest, obj: UpstreamPayment | None = None) -> Any:
        return self.fields if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: UpstreamPayment, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            return
        created = upstream_payment_record(
            book=obj.book,
            provider=obj.provider,
            amount=obj.amount,
            currency=obj.currency,
            paid_at=obj.paid_at,
            reference=obj.reference,
        )
        obj.pk = created.pk

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        return _guarded(self, request, super().add_view, form_url, extra_context)


def _guarded(model_admin: admin.ModelAdmin, request: HttpRequest, view: Any, *args: Any) -> Any:
    """Run an add view; a business-rule failure from the service becomes a message on the form
    page rather than a 500 (the transaction around the view has rolled back)."""
    try:
        return view(request, *args)
    except ApplicationError as exc:
        model_admin.message_user(request, exc.message, level=messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())


class UpstreamStatementForm(forms.ModelForm):
    file = forms.FileField(help_text="CSV: day, model, input, cached_input, cache_write, output, amount")

    class Meta:
        model = UpstreamStatement
        fields = ("book", "provider", "reference")


@admin.register(UpstreamStatement)
class UpstreamStatementAdmin(admin.ModelAdmin):
    """Import a provider's usage statement and see it against our metering, day by day."""

    list_display = ("reference", "book", "provider", "day_from", "day_to", "imported_at")
    list_filter = ("book", "provider")
    search_fields = ("reference",)
    list_select_related = ("book", "provider")
    readonly_fields = ("book", "provider", "reference", "day_from", "day_to", "imported_at", "variance")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = UpstreamStatementForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: UpstreamStatement | None = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: UpstreamStatement | None = None) -> Any:
        return self.readonly_fields if obj is not None else ("book", "provider", "reference", "file")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Statement against our metering (statement - metered)")
    def variance(self, obj: UpstreamStatement) -> str:
        rows = upstream_variance(
            book=obj.book, provider=obj.provider, day_from=obj.day_from, day_to=obj.day_to
        )
        cells = (
            (
                row.day,
                row.model,
                ", ".join(f"{c} {v:+,}" for c, v in row.token_variance.items() if v) or "-",
                "-" if row.statement_amount is None else row.statement_amount,
                row.metered_amount,
                row.amount_variance,
                "ok" if row.matches else "VARIANCE",
            )
            for row in rows
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            cells,
        )
        return format_html(
            "<table><thead><tr><th>day</th><th>model</th><th>token variance</th><th>statement</th>"
            "<th>metered</th><th>amount variance</th><th></th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    def save_model(
        self, request: HttpRequest, obj: UpstreamStatement, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            return
        upload = form.cleaned_data["file"]
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("the statement must be a UTF-8 CSV file") from None
        created = upstream_statement_import(
            book=obj.book,
            provider=obj.provider,
            csv_text=text,
            reference=obj.reference,
            imported_at=timezone.now(),
        )
        obj.pk = created.pk

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        return _guarded(self, request, super().add_view, form_url, extra_context)
