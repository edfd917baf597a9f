"""Upstream (§3): providers, their models (SKUs), effective-dated list prices, quota purchases,
the draws that turn usage into upstream cost, and payments to providers.

Money moves only through `procurement.services`, which posts every purchase, draw, breakage and
payment to the ledger; these rows are the sub-ledger that explains the `upstream_prepayments` and
`upstream_payables` balances.
"""

from __future__ import annotations

from django.db import models

from distributor.money import amount_field, currency_field, price_field

TOKEN_CLASSES: tuple[str, ...] = ("input", "cached_input", "cache_write", "output")


class Provider(models.Model):
    """An upstream model vendor the distributor buys capacity from."""

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = currency_field(help_text="The currency of its list prices and purchases")
    low_cover_days = models.PositiveIntegerField(
        default=14, help_text="Alert when prepaid credit covers fewer days of burn than this"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def counterparty(self) -> str:
        return f"provider:{self.code}"


class ProviderModel(models.Model):
    """A SKU of a provider. Codes are globally unique: usage names a model, never a provider."""

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    code = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class ListPriceVersion(models.Model):
    """The vendor's public rate per 1M tokens from `effective_from` until the next version.

    Append-only: a price change adds a version, so usage is always rated at the version in force
    when the call happened. A NULL class has no price and usage of it is refused.
    """

    model = models.ForeignKey(ProviderModel, on_delete=models.PROTECT, related_name="list_prices")
    effective_from = models.DateTimeField()
    input = price_field(null=True, blank=True)
    cached_input = price_field(null=True, blank=True)
    cache_write = price_field(null=True, blank=True)
    output = price_field(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="list_price_unique_version"),
            *(
                models.CheckConstraint(
                    condition=models.Q(**{f"{cls}__isnull": True}) | models.Q(**{f"{cls}__gte": 0}),
                    name=f"list_price_{cls}_not_negative",
                )
                for cls in TOKEN_CLASSES
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.code} from {self.effective_from.isoformat()}"

    def prices(self) -> dict[str, object]:
        return {cls: getattr(self, cls) for cls in TOKEN_CLASSES}


class QuotaPurchase(models.Model):
    """A prepayment to a provider: `paid` cash for `credit` in list-price terms (paid < credit is a
    bulk discount). Usage draws `remaining_credit` down FIFO; what is left at `expires_at` is breakage.
    """

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="quota_purchases")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="purchases")
    paid = amount_field(help_text="Cash paid (0 for promotional credit)")
    credit = amount_field(help_text="Credit granted, in list-price terms")
    currency = currency_field()
    purchased_at = models.DateTimeField()
    expires_on = models.DateField(null=True, blank=True, help_text="Last day the credit may be used")
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the day after expires_on in the book's time zone"
    )
    promotional = models.BooleanField(default=False)
    reference = models.CharField(max_length=200, blank=True)
    remaining_credit = amount_field(help_text="Credit not yet drawn, in list-price terms")
    purchase_entry = models.ForeignKey(
        "ledger.JournalEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When the expiry was booked")
    breakage_list = amount_field(null=True, blank=True, help_text="Credit lapsed at expiry, list terms")
    breakage_amount = amount_field(null=True, blank=True, help_text="Breakage loss booked, minor unit")
    breakage_entry = models.ForeignKey(
        "ledger.JournalEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["purchased_at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(credit__gt=0), name="quota_purchase_credit_positive"),
            models.CheckConstraint(condition=models.Q(paid__gte=0), name="quota_purchase_paid_not_negative"),
            models.CheckConstraint(
                condition=models.Q(remaining_credit__gte=0)
                & models.Q(remaining_credit__lte=models.F("credit")),
                name="quota_purchase_remaining_within_credit",
            ),
            models.CheckConstraint(
                condition=models.Q(promotional=False, paid__gt=0) | models.Q(promotional=True, paid=0),
                name="quota_purchase_paid_matches_kind",
            ),
            models.UniqueConstraint(
                fields=["book", "reference"],
                condition=~models.Q(reference=""),
                name="quota_purchase_unique_reference",
            ),
        ]
        indexes = [
            models.Index(fields=["book", "provider", "currency"], name="quota_purchase_drawable"),
            models.Index(fields=["book", "expires_at"], name="quota_purchase_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.provider.code} {self.credit} {self.currency} ({self.purchased_at.date()})"


class UpstreamCharge(models.Model):
    """One call of `upstream_cost_draw`: a list-price charge turned into cost, keyed for replay.

    `drawn_list` came out of prepaid credit (see its QuotaDraw rows); `accrued_list` had no credit
    left and became a payable of `accrued_payable`. `entry` may be shared by a batch's charges.
    """

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="upstream_charges")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="charges")
    model = models.ForeignKey(
        ProviderModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    idempotency_key = models.CharField(max_length=200)
    at = models.DateTimeField()
    currency = currency_field()
    list_charge = amount_field()
    drawn_list = amount_field()
    drawn_cost = amount_field()
    accrued_list = amount_field()
    accrued_payable = amount_field()
    cost = amount_field(help_text="drawn_cost + accrued_payable")
    entry = models.ForeignKey(
        "ledger.JournalEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["book", "idempotency_key"], name="upstream_charge_unique_key"),
            models.CheckConstraint(
                condition=models.Q(list_charge__gte=0), name="upstream_charge_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["book", "provider", "at"], name="upstream_charge_burn")]

    def __str__(self) -> str:
        return f"{self.provider.code} {self.list_charge} {self.currency} @ {self.at.isoformat()}"


class QuotaDraw(models.Model):
    """The part of a charge drawn from one purchase: `list_amount` of credit at `cost_amount`."""

    charge = models.ForeignKey(UpstreamCharge, on_delete=models.PROTECT, related_name="draws")
    purchase = models.ForeignKey(QuotaPurchase, on_delete=models.PROTECT, related_name="draws")
    list_amount = amount_field()
    cost_amount = amount_field()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(list_amount__gt=0), name="quota_draw_positive"),
            models.CheckConstraint(
                condition=models.Q(cost_amount__gte=0), name="quota_draw_cost_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.list_amount} from purchase {self.purchase_id}"


class UpstreamPayment(models.Model):
    """Cash paid to a provider against what the book owes it (accrued overage, invoices)."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="upstream_payments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="payments")
    amount = amount_field()
    currency = currency_field()
    paid_at = models.DateTimeField()
    reference = models.CharField(max_length=200)
    entry = models.ForeignKey(
        "ledger.JournalEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-paid_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["book", "reference"], name="upstream_payment_unique_reference"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="upstream_payment_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.provider.code} {self.amount} {self.currency} {self.reference}"


class UpstreamStatement(models.Model):
    """A provider's usage statement as imported (§3): what the provider says it metered and
    charged per day and model, kept beside our own metering to show the variance."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="upstream_statements")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="statements")
    reference = models.CharField(max_length=200, help_text="The provider's statement id or file name")
    content_hash = models.CharField(max_length=64)
    day_from = models.DateField()
    day_to = models.DateField(help_text="The last day the statement covers")
    imported_at = models.DateTimeField()

    class Meta:
        ordering = ["-day_from", "provider"]
        constraints = [
            models.UniqueConstraint(
                fields=["book", "provider", "reference"], name="upstream_statement_unique_reference"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.reference}"


class UpstreamStatementLine(models.Model):
    """One (day, model) row of a provider's statement: tokens per class and the amount charged."""

    statement = models.ForeignKey(UpstreamStatement, on_delete=models.CASCADE, related_name="lines")
    day = models.DateField()
    model_code = models.CharField(max_length=100)
    input_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    amount = amount_field()

    class Meta:
        ordering = ["day", "model_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "day", "model_code"], name="upstream_statement_line_unique_day_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model_code} {self.amount}"
