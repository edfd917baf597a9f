"""Finance staff's read-only view of the books (§8).

Nothing here adds, changes or deletes a ledger row: the database refuses it anyway, and a correction
is a reversal. The one action, "Reverse selected entries", posts each reversal through
`ledger.services.entry_reverse` and needs the `ledger.reverse_journalentry` permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from distributor.errors import ApplicationError
from ledger.models import AccountBalance, Book, ExchangeRate, JournalEntry, LedgerAccount, Posting
from ledger.services import entry_reverse


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff with the view permission; no one adds, edits or deletes through it."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Book)
class BookAdmin(ReadOnlyAdmin):
    list_display = ["code", "name", "currency", "timezone", "grace_days", "created_at"]
    search_fields = ["code", "name"]
    list_filter = ["currency"]


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["book", "code", "name", "type", "normal_side"]
    list_filter = ["book", "type"]
    search_fields = ["code", "name", "book__code"]
    list_select_related = ["book"]


class PostingInline(admin.TabularInline):
    model = Posting
    fields = ["ledger_account", "counterparty", "side", "amount", "currency"]
    readonly_fields = ["ledger_account", "counterparty", "side", "amount", "currency"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Posting]:
        return super().get_queryset(request).select_related("ledger_account__book")


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "book",
        "occurred_at",
        "description",
        "source_type",
        "source_id",
        "idempotency_key",
        "reverses",
    ]
    list_filter = ["book", "source_type"]
    search_fields = ["idempotency_key", "description", "source_id", "postings__counterparty"]
    list_select_related = ["book", "reverses__book"]
    date_hierarchy = "occurred_at"
    inlines = [PostingInline]
    actions = ["reverse_selected"]
    show_full_result_count = False  # a count(*) over millions of entries on every page is costly

    def has_reverse_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.reverse_journalentry")

    @admin.action(description="Reverse selected entries", permissions=["reverse"])
    def reverse_selected(self, request: HttpRequest, queryset: QuerySet[JournalEntry]) -> None:
        now = timezone.now()
        reversed_count = 0
        for entry in queryset.select_related("book").order_by("pk"):
            already = JournalEntry.objects.filter(reverses=entry).values_list("pk", flat=True).first()
            if already is not None:
                self.message_user(
                    request, f"Entry #{entry.pk} was already reversed by entry #{already}.", messages.WARNING
                )
                continue
            try:
                # Each reversal in its own transaction: one refusal does not undo the others.
                with transaction.atomic():
                    mirror = entry_reverse(
                        entry=entry,
                        occurred_at=now,
                        description=f"Reversal of #{entry.pk} ({entry.description or entry.idempotency_key})"
                        f" by {request.user}",
                    )
            except ApplicationError as exc:
                self.message_user(
                    request, f"Entry #{entry.pk} was not reversed: {exc.message}", messages.ERROR
                )
                continue
            reversed_count += 1
            self.message_user(request, f"Entry #{entry.pk} reversed by entry #{mirror.pk}.", messages.SUCCESS)
        if reversed_count == 0:
            self.message_user(request, "No entry was reversed.", messages.INFO)


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ["id", "entry", "ledger_account", "counterparty", "side", "amount", "currency"]
    list_filter = ["ledger_account__book", "entry__source_type", "side", "currency"]
    search_fields = ["counterparty", "entry__idempotency_key", "entry__description"]
    list_select_related = ["entry__book", "ledger_account__book"]
    show_full_result_count = False


@admin.register(AccountBalance)
class AccountBalanceAdmin(ReadOnlyAdmin):
    list_display = ["ledger_account", "counterparty", "currency", "debits", "credits", "balance"]
    list_filter = ["ledger_account__book", "ledger_account__code", "currency"]
    search_fields = ["counterparty", "ledger_account__code"]
    list_select_related = ["ledger_account__book"]

    @admin.display(description="Balance (normal side)")
    def balance(self, obj: AccountBalance) -> Any:
        difference = obj.debits - obj.credits
        return difference if obj.ledger_account.normal_side == "debit" else -difference


@admin.register(ExchangeRate)
class ExchangeRateAdmin(ReadOnlyAdmin):
    list_display = ["base", "quote", "rate", "effective_at", "created_at"]
    list_filter = ["base", "quote"]
    search_fields = ["base", "quote"]
    date_hierarchy = "effective_at"
