"""Settlement's tables for usage (§5): the request keys that make ingestion exactly-once, the raw
events (append-only, partitioned by month), the batches, and the rollups that rating maintains so
that the close and credit control read a few hundred rows instead of millions of events.

Accounts and provider models are referenced by plain bigint ids, not foreign keys: the hot path
writes these tables with COPY and set-based SQL, and the raw event table is partitioned (a
partitioned table cannot be the target of the FK checks we would want anyway). The ids are
resolved by the validator before anything is written.
"""

from __future__ import annotations

from django.db import models

from distributor.money import amount_field, currency_field, price_field

TOKEN_CLASSES: tuple[str, ...] = ("input", "cached_input", "cache_write", "output")


class UsageBatch(models.Model):
    """One call of `usage_ingest`: who sent it, when, and what became of its events."""

    received_at = models.DateTimeField(db_index=True)
    caller_account_id = models.BigIntegerField(null=True, blank=True, help_text="None = a service key")
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "usage batches"

    def __str__(self) -> str:
        return f"batch {self.pk} at {self.received_at:%Y-%m-%d %H:%M}: {self.accepted} accepted"


class UsageKey(models.Model):
    """The idempotency key of an event. The event table is partitioned by month, so a unique index
    there would have to include occurred_at; this plain table carries UNIQUE (account, request_id),
    its only index, which Django takes as the primary key. Whether a replay is a duplicate (same
    content) or a conflict (different content) is told by comparing it with the event the key
    landed, found by (account, request_id, occurred_at)."""

    # No surrogate id: it was a second index written per event that nothing looked anything up by.
    pk = models.CompositePrimaryKey("account_id", "request_id")
    account_id = models.BigIntegerField()
    # Byte order ("C"): request ids are opaque, and the unique index compares them on every insert.
    request_id = models.CharField(max_length=200, db_collation="C")
    occurred_at = models.DateTimeField()
    # A plain id, not a foreign key: an FK would cost a referential check per landed event.
    batch_id = models.BigIntegerField(null=True, blank=True, help_text="The UsageBatch that landed it")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account_id", "request_id"], name="usage_key_unique_request")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.request_id}"


class UsageEvent(models.Model):
    """A metered call, as the gateway reported it. The table is created by raw SQL (migration 0002)
    as `PARTITION BY RANGE (occurred_at)` with one partition per calendar month (UTC); Django only
    reads it. (account, request_id) is unique through the event's UsageKey; the table itself has
    no primary key index (migration 0010), only an index on batch_id (migration 0012), which a replay's
    comparison uses to find the events of the batches it repeats."""

    pk = models.CompositePrimaryKey("account_id", "request_id")
    account_id = models.BigIntegerField()
    # Byte order ("C"): request ids are opaque, and the unique index compares them on every insert.
    request_id = models.CharField(max_length=200, db_collation="C")
    model_id = models.BigIntegerField()
    model_code = models.CharField(max_length=100)
    input_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    batch_id = models.BigIntegerField()
    tags = models.JSONField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "settlement_usageevent"

    def __str__(self) -> str:
        return f"{self.account_id}/{self.request_id}"


class UsageRollup(models.Model):
    """What one payer owes its parent for one model, token class and unit price on one day (in the
    payee book's zone): one row per cascade hop (§4). `amount` is exact (tokens x unit price / 1M,
    never rounded). Rows are only ever added to by rating: what has been invoiced of them is kept
    per month on the invoices (`InvoiceUsage`), so issuing a month never rewrites its ~1,200 rows an
    account (§11.6: unbilled = these rows - the usage of issued invoices)."""

    payer_account_id = models.BigIntegerField()
    # No index of its own: usage_rollup_book_day leads with it.
    payee_book = models.ForeignKey(
        "ledger.Book", on_delete=models.PROTECT, related_name="usage_rollups", db_index=False
    )
    payee_account_id = models.BigIntegerField(null=True, blank=True, help_text="None = the root")
    model_id = models.BigIntegerField()
    model_code = models.CharField(max_length=100)
    day = models.DateField()
    token_class = models.CharField(max_length=16)
    unit_price = price_field()
    currency = currency_field()
    prepaid = models.BooleanField(help_text="Drawn from the wallet as it landed (not invoiced)")
    price_list_id = models.BigIntegerField(null=True, blank=True)
    tokens = models.BigIntegerField(default=0)
    amount = amount_field(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["day", "payer_account_id", "model_code", "token_class"]
        constraints = [
            models.UniqueConstraint(
                fields=["payer_account_id", "model_id", "day", "token_class", "unit_price", "prepaid"],
                name="usage_rollup_unique_line",
            ),
        ]
        indexes = [
            models.Index(fields=["payee_book", "day"], name="usage_rollup_book_day"),
            models.Index(fields=["payer_account_id", "day"], name="usage_rollup_payer_day"),
        ]

    def __str__(self) -> str:
        return f"{self.payer_account_id} {self.model_code}/{self.token_class} {self.day}: {self.amount}"


class UsageAccrual(models.Model):
    """A payer's postpaid usage per month (payee book's zone), model, token class and unit price:
    its daily rollup rows summed by rating, in the same statement that writes them. The close reads
    these (~40 rows an account a month) instead of summing ~1,200 daily rows, and credit control
    sums them for unbilled usage. `revision` counts the batches that changed the row: a draft
    remembers the sum of its payer's revisions up to its period's end, so issuing it can tell in one
    indexed read whether any usage of its period arrived since."""

    payer_account_id = models.BigIntegerField()
    month = models.DateField(help_text="First day of the month")
    model_id = models.BigIntegerField()
    model_code = models.CharField(max_length=100)
    token_class = models.CharField(max_length=16)
    unit_price = price_field()
    currency = currency_field()
    first_day = models.DateField(help_text="Earliest day of the month with usage at this price")
    tokens = models.BigIntegerField(default=0)
    amount = amount_field(default=0)
    revision = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["month", "payer_account_id", "model_code", "token_class"]
        constraints = [
            models.UniqueConstraint(
                fields=["payer_account_id", "month", "model_id", "token_class", "unit_price"],
                name="usage_accrual_unique",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.payer_account_id} {self.month:%Y-%m} {self.model_code}/{self.token_class}: {self.amount}"
        )


class UpstreamCostRollup(models.Model):
    """The root's cost of usage per provider, model and day (root book's zone): the list-price
    charge, what it cost (drawn from prepaid quota at paid/credit, or accrued), and the metered
    tokens per class for reconciliation against the provider's statement (§3)."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="upstream_cost_rollups")
    provider_id = models.BigIntegerField()
    model_id = models.BigIntegerField()
    model_code = models.CharField(max_length=100)
    day = models.DateField()
    currency = currency_field()
    input_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    list_charge = amount_field(default=0)
    cost = amount_field(default=0)
    accrued_list = amount_field(default=0, help_text="List charge not covered by prepaid quota")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["day", "model_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["book", "provider_id", "model_id", "day"], name="upstream_cost_rollup_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.book_id} {self.model_code} {self.day}: {self.cost}"


# Billing (the close, invoices, payments, credit notes) lives in its own module.
from settlement.models_billing import *  # noqa: E402, F403
from settlement.models_dunning import *  # noqa: E402, F403
from settlement.models_risk import *  # noqa: E402, F403
