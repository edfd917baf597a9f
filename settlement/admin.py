"""Read-only views of usage for finance: batches, rollups and upstream cost. Nothing is edited
here; usage changes only by ingestion, corrections by credit notes."""

from __future__ import annotations

from django.contrib import admin

from settlement.admin_base import ReadOnlyAdmin
from settlement.models import UpstreamCostRollup, UsageBatch, UsageRollup


@admin.register(UsageBatch)
class UsageBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "received_at", "caller_account_id", "accepted", "duplicates", "rejected")
    date_hierarchy = "received_at"


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = (
        "day",
        "payer_account_id",
        "payee_book",
        "model_code",
        "token_class",
        "unit_price",
        "tokens",
        "amount",
        "currency",
        "prepaid",
    )
    list_filter = ("prepaid", "token_class", "payee_book")
    search_fields = ("model_code",)
    date_hierarchy = "day"


@admin.register(UpstreamCostRollup)
class UpstreamCostRollupAdmin(ReadOnlyAdmin):
    list_display = (
        "day",
        "book",
        "provider_id",
        "model_code",
        "list_charge",
        "cost",
        "accrued_list",
        "currency",
    )
    list_filter = ("book",)
    date_hierarchy = "day"


# The billing pages (invoices, payments, credit notes, statements) live in their own module.
import settlement.billing_admin  # noqa: E402
import settlement.risk_admin  # noqa: E402, F401
from settlement import dunning_admin as _dunning_admin  # noqa: E402, F401
