"""Finance staff's screens for the account tree, price lists, top-ups, API keys and the audit trail.

The admin never writes these rows itself: each add or change form calls the service in its
`clean()`, so a refused business rule shows as a form error and the change is audited with the
request user. The admin view runs in one transaction, so nothing is half-saved. Price lists,
top-ups, keys and audit records are append-only here: their change views are read-only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import (
    API_KEY_SCOPES,
    Account,
    ApiKey,
    AuditRecord,
    PriceList,
    PriceOverride,
    Status,
    Terms,
    Topup,
)
from accounts.services import (
    account_create,
    account_update,
    api_key_create,
    api_key_revoke,
    price_list_set,
    topup_record,
)
from distributor.errors import ApplicationError
from ledger.models import Book


class ServiceForm(forms.ModelForm):
    """A model form whose valid data is handed to a service; the service's refusal is a form error."""

    request: HttpRequest
    result: Model | None = None

    def run_service(self, data: dict[str, Any]) -> Model:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            self.result = self.run_service(data)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data

    def _post_clean(self) -> None:
        # The service validated and wrote the row; the ModelForm's own instance validation would
        # see a half-filled instance (no book, no hash) and must not run.
        pass


class ServiceAdmin(admin.ModelAdmin):
    """Saves through the form's service call; the admin's own save is skipped."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        return form.result if form.result is not None else form.instance

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        # The inlines are read-only views (children, versions, overrides): only the form changed.
        return super().construct_change_message(request, form, [], add)

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- accounts ----------------------------------------------------------------------------------


class AccountForm(ServiceForm):
    root_book = forms.ModelChoiceField(
        queryset=Book.objects.filter(owner_account__isnull=True),
        required=False,
        help_text="For an account without a parent: the root book that bills it",
    )

    class Meta:
        model = Account
        fields = [
            "code",
            "name",
            "parent",
            "kind",
            "currency",
            "terms",
            "net_days",
            "credit_limit",
            "status",
            "tax_rate",
            "commitment",
        ]

    def run_service(self, data: dict[str, Any]) -> Model:
        actor = self.request.user
        if self.instance.pk:
            changes = {
                name: data.get(name)
                for name in (
                    "name",
                    "kind",
                    "terms",
                    "net_days",
                    "credit_limit",
                    "status",
                    "tax_rate",
                    "commitment",
                )
                if name in self.changed_data
            }
            return account_update(account=self.instance, actor=actor, **changes)  # type: ignore[arg-type]
        parent: Account | None = data.get("parent")
        root_book = data.get("root_book")
        if parent is not None:
            top_id = parent.ancestor_ids[0] if parent.ancestor_ids else parent.pk
            root_book = Account.objects.get(pk=top_id).book
        if root_book is None:
            raise forms.ValidationError("choose the root book of an account without a parent")
        return account_create(
            root_book=root_book,
            code=data["code"],
            name=data["name"],
            parent=parent,
            kind=data["kind"],
            currency=data["currency"],
            terms=data["terms"],
            net_days=data["net_days"],
            credit_limit=data.get("credit_limit"),
            tax_rate=data.get("tax_rate") or Decimal(0),
            commitment=data.get("commitment") or Decimal(0),
            status=data.get("status") or Status.ACTIVE,
            actor=actor,
        )


class ChildInline(admin.TabularInline):
    model = Account
    fk_name = "parent"
    fields = ["code", "name", "kind", "terms", "status", "credit_limit"]
    readonly_fields = ["code", "name", "kind", "terms", "status", "credit_limit"]
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "children"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PriceListInline(admin.TabularInline):
    model = PriceList
    fields = ["effective_from", "rule", "rate"]
    readonly_fields = ["effective_from", "rule", "rate"]
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-effective_from"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ServiceAdmin):
    form = AccountForm
    list_display = ["code", "name", "kind", "parent", "depth", "terms", "status", "currency", "credit_limit"]
    list_filter = ["terms", "status", "kind", "depth"]
    search_fields = ["code", "name"]
    list_select_related = ["parent"]
    inlines = [ChildInline, PriceListInline]
    readonly_fields = ["book", "own_book", "ancestor_ids", "depth", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fixed = ["code", "parent", "currency"] if obj is not None else []
        return [*fixed, *self.readonly_fields]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["fields"] = [f for f in AccountForm.Meta.fields if f not in ("code", "parent", "currency")]
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        return [f for f in fields if f != "root_book"] if obj is not None else fields

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        pass  # the inlines are read-only views of children and price versions


# --- price lists -------------------------------------------------------------------------------


def overrides_parse(text: str) -> dict[str, dict[str, str]]:
    """`<model> <class> <price>` per line, e.g. `claude-opus-4.6 input 4.80`."""
    overrides: dict[str, dict[str, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise forms.ValidationError(f"override line {number}: write '<model> <token class> <price>'")
        overrides.setdefault(parts[0], {})[parts[1]] = parts[2]
    return overrides


class PriceListForm(ServiceForm):
    overrides_text = forms.CharField(
        label="Overrides",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One per line: model code, token class, price per 1M tokens (claude-opus-4.6 input 4.80)",
    )

    class Meta:
        model = PriceList
        fields = ["account", "effective_from", "rule", "rate"]

    def run_service(self, data: dict[str, Any]) -> Model:
        return price_list_set(
            account=data["account"],
            effective_from=data["effective_from"],
            rule=data["rule"],
            rate=data["rate"],
            overrides=overrides_parse(data.get("overrides_text") or ""),  # type: ignore[arg-type]
            actor=self.request.user,
        )


class PriceOverrideInline(admin.TabularInline):
    model = PriceOverride
    fields = ["model_code", "token_class", "unit_price"]
    readonly_fields = ["model_code", "token_class", "unit_price"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PriceList)
class PriceListAdmin(ServiceAdmin):
    form = PriceListForm
    list_display = ["account", "effective_from", "rule", "rate", "created_at"]
    list_filter = ["rule"]
    search_fields = ["account__code"]
    list_select_related = ["account"]
    autocomplete_fields = ["account"]
    inlines = [PriceOverrideInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # append-only: a change is a new version


# --- top-ups -----------------------------------------------------------------------------------


class TopupForm(ServiceForm):
    class Meta:
        model = Topup
        fields = ["account", "amount", "at", "reference"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "account" in self.fields:
            self.fields["account"].queryset = Account.objects.filter(terms=Terms.PREPAID)  # type: ignore[attr-defined]
        if "at" in self.fields:
            self.fields["at"].initial = timezone.now

    def run_service(self, data: dict[str, Any]) -> Model:
        return topup_record(
            account=data["account"],
            amount=data["amount"],
            at=data["at"],
            reference=data.get("reference") or "",
            actor=self.request.user,
        )


@admin.register(Topup)
class TopupAdmin(ServiceAdmin):
    form = TopupForm
    list_display = ["receipt_number", "account", "amount", "currency", "at", "reference"]
    search_fields = ["receipt_number", "reference", "account__code"]
    list_select_related = ["account"]
    date_hierarchy = "at"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> Any:
        messages.success(request, f"Receipt {obj.receipt_number} for {obj.amount} {obj.currency}.")
        return super().response_add(request, obj, post_url_continue)


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyForm(ServiceForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in API_KEY_SCOPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ["account", "name", "scopes", "expires_at"]

    secret: str = ""

    def run_service(self, data: dict[str, Any]) -> Model:
        key, self.secret = api_key_create(
            account=data.get("account"),
            scopes=list(data["scopes"]),
            name=data.get("name") or "",
            expires_at=data.get("expires_at"),
            actor=self.request.user,
        )
        return key


@admin.action(description="Revoke the selected keys", permissions=["revoke"])
def revoke_keys(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
    for key in queryset.order_by("pk"):
        api_key_revoke(key=key, actor=request.user)  # type: ignore[arg-type]
    messages.success(request, f"Revoked {queryset.count()} key(s).")


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "account", "name", "scopes", "created_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "name", "account__code"]
    list_select_related = ["account"]
    actions = [revoke_keys]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a key is never edited: revoke it (the list's action) and issue another

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        # Revoking is the one change a key gets; it is offered to holders of "change" on keys only.
        return request.user.has_perm("accounts.change_apikey")

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        key = super().save_form(request, form, change)
        if form.secret:
            # Shown once: only its hash is stored, so it cannot be shown again.
            messages.warning(request, f"Copy the secret now, it will not be shown again: {form.secret}")
        return key


# --- audit -------------------------------------------------------------------------------------


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "object_id"]
    list_select_related = ["actor"]
    date_hierarchy = "at"
    readonly_fields = ["at", "actor", "action", "object_type", "object_id", "object_repr", "before", "after"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
