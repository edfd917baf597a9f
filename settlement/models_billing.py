"""Billing (§7): close runs, invoices and their lines, manual charges, payments and their
allocations, credit notes, prepaid statements, and the gapless number counters.

Issued invoices and credit notes are immutable in the database (migration `*_billing`): a trigger
refuses any change to an issued invoice's financial columns or lines; only its status and the
paid / credited / written-off amounts move afterwards. Drafts are not money: the close re-derives
them from the rollups until they are issued.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from distributor.money import amount_field, currency_field, price_field

__all__ = [
    "CloseRun",
    "CloseRunStatus",
    "CreditNote",
    "Invoice",
    "InvoiceLine",
    "InvoiceLineKind",
    "InvoiceStatus",
    "InvoiceUsage",
    "ManualCharge",
    "NumberCounter",
    "Payment",
    "PaymentAllocation",
    "PeriodKind",
    "Statement",
]


class PeriodKind(models.TextChoices):
    MONTH = "month"
    QUARTER = "quarter"


class CloseRunStatus(models.TextChoices):
    RUNNING = "running"
    DONE = "done"


class CloseRun(models.Model):
    """One close of one book's period. `last_account_id` is the resume pointer: every account with a
    smaller id has been closed, so a crashed run carries on from there."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="close_runs")
    period_kind = models.CharField(max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    label = models.CharField(max_length=16)
    status = models.CharField(max_length=8, choices=CloseRunStatus.choices, default=CloseRunStatus.RUNNING)
    last_account_id = models.BigIntegerField(default=0)
    invoices_drafted = models.PositiveIntegerField(default=0)
    statements_drawn = models.PositiveIntegerField(default=0)
    run_at = models.DateTimeField(help_text="The `now` the run was started with")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "book"]
        constraints = [
            models.UniqueConstraint(fields=["book", "period_kind", "period_start"], name="close_run_unique")
        ]

    def __str__(self) -> str:
        return f"{self.book} {self.label} ({self.status})"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft"
    ISSUED = "issued"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"
    WRITTEN_OFF = "written_off"


class Invoice(models.Model):
    """What one account owes its parent for one period. Unique per (account, period)."""

    issuer_book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="invoices")
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="invoices")
    period_kind = models.CharField(max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    label = models.CharField(max_length=16, help_text="2026-10 or 2026-Q4")
    currency = currency_field()
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    number = models.CharField(max_length=100, null=True, blank=True, unique=True)
    due_date = models.DateField()
    issue_date = models.DateField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    tax_rate = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal(0))
    subtotal = amount_field(default=0)
    tax = amount_field(default=0)
    total = amount_field(default=0)
    paid_amount = amount_field(default=0)
    credited_amount = amount_field(default=0)
    written_off_amount = amount_field(default=0)
    drafted_at = models.DateTimeField()
    usage_revision = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Sum of the payer's usage accrual revisions up to the period's end when drafted",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["period_start", "issuer_book", "account"]
        # A write-off moves money out of receivables on a controller's word (§9): its own permission.
        permissions = [("write_off_invoice", "Can write off invoices")]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "period_kind", "period_start"], name="invoice_unique_account_period"
            ),
            models.CheckConstraint(
                condition=models.Q(total=models.F("subtotal") + models.F("tax")), name="invoice_total_adds_up"
            ),
            models.CheckConstraint(
                condition=models.Q(status="draft") | models.Q(number__isnull=False),
                name="invoice_issued_has_number",
            ),
        ]
        indexes = [
            models.Index(fields=["issuer_book", "status"], name="invoice_book_status"),
            models.Index(fields=["account", "status", "due_date"], name="invoice_account_open"),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.account_id} {self.label}"

    @property
    def open_amount(self) -> Decimal:
        """What is still owed on it: total less payments, credit notes and write-offs."""
        if self.status == InvoiceStatus.DRAFT:
            return Decimal(0)
        return self.total - self.paid_amount - self.credited_amount - self.written_off_amount


class InvoiceUsage(models.Model):
    """The usage an invoice bills: for one month of the payer's rollups, one model, token class and
    unit price, the part that was unbilled when the invoice was drafted (exact). Usage is billed
    once its invoice is no longer a draft, so unbilled usage = rollups - the usage rows of
    non-draft invoices, per month and key. A draft's rows are rewritten with it; an issued
    invoice's rows are refused any change by the database, like its lines (migration 0007)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="usage")
    payer_account_id = models.BigIntegerField()
    month = models.DateField(help_text="First day of the month the usage happened in (book's zone)")
    first_day = models.DateField(help_text="Earliest day of the month with usage at this price")
    model_id = models.BigIntegerField()
    model_code = models.CharField(max_length=100)
    token_class = models.CharField(max_length=16)
    unit_price = price_field()
    tokens = models.BigIntegerField()
    amount = amount_field()

    class Meta:
        ordering = ["invoice", "month", "model_code", "token_class"]
        indexes = [
            models.Index(fields=["payer_account_id", "month"], name="invoice_usage_payer_month"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id} {self.month:%Y-%m} {self.model_code}/{self.token_class}: {self.amount}"


class InvoiceLineKind(models.TextChoices):
    USAGE = "usage"
    CHARGE = "charge"
    SHORTFALL = "shortfall"
    # §11.12: a prepaid wallet's usage beyond its balance (settlement.services.prepaid_shortfalls).
    WALLET_SHORTFALL = "wallet_shortfall"


class InvoiceLine(models.Model):
    """One printed line. Usage lines carry model, class, tokens and unit price per 1M; `late`
    marks usage of an earlier, already issued period (§11.4). `exact_amount` is the unrounded sum
    the line was rounded from, once, half-up."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=InvoiceLineKind.choices)
    description = models.CharField(max_length=300, blank=True)
    model_code = models.CharField(max_length=100, blank=True)
    token_class = models.CharField(max_length=16, blank=True)
    tokens = models.BigIntegerField(null=True, blank=True)
    unit_price = price_field(null=True, blank=True)
    late = models.BooleanField(default=False)
    exact_amount = amount_field()
    amount = amount_field()

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_unique_position")
        ]

    def __str__(self) -> str:
        return f"{self.description or self.model_code} {self.amount}"


class ManualCharge(models.Model):
    """An enterprise service charge (§11.3): billed on the invoice of the period containing `at`,
    or the next open one if that is already issued. `invoice` is set when that invoice is issued."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="manual_charges")
    description = models.CharField(max_length=300)
    amount = amount_field()
    currency = currency_field()
    at = models.DateTimeField()
    reference = models.CharField(max_length=200, blank=True)
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="manual_charges"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="manual_charge_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.description} {self.amount} {self.currency}"


class NumberCounter(models.Model):
    """The last number used per issuer book, series and year. Locked FOR UPDATE in the issuing
    transaction, so a failed issue rolls its number back with it: the series has no gaps."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="number_counters")
    series = models.CharField(max_length=8, help_text="INV or CN")
    year = models.PositiveIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["book", "series", "year"], name="number_counter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.book_id} {self.series} {self.year}: {self.last}"


class Payment(models.Model):
    """Money received from an account by its parent. The reference is unique per payer."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="payments")
    payee_book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="payments")
    amount = amount_field()
    currency = currency_field()
    received_at = models.DateTimeField()
    reference = models.CharField(max_length=200)
    invoice_periods = models.JSONField(default=list, blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "reference"], name="payment_unique_reference"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.currency}"


class PaymentAllocation(models.Model):
    """Part of a payment applied to an invoice: at receipt, or later from the credit balance when
    the next invoice is issued. The unapplied rest of a payment is the account's credit balance."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    amount = amount_field()
    allocated_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_allocation_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} -> {self.invoice_id}: {self.amount}"


class CreditNote(models.Model):
    """A correction of an issued invoice, in its own gapless series; never edited once made."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    issuer_book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=100, unique=True)
    reason = models.CharField(max_length=300)
    currency = currency_field()
    subtotal = amount_field()
    tax = amount_field()
    total = amount_field()
    issued_at = models.DateTimeField()
    issue_date = models.DateField()
    idempotency_key = models.CharField(max_length=200)

    class Meta:
        ordering = ["issued_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "idempotency_key"], name="credit_note_unique_key"),
            models.CheckConstraint(condition=models.Q(total__gt=0), name="credit_note_positive"),
            models.CheckConstraint(
                condition=models.Q(total=models.F("subtotal") + models.F("tax")),
                name="credit_note_total_adds_up",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class Statement(models.Model):
    """A prepaid account's month (§7): exact figures from its wallet in the ledger; documents show
    them rounded. `usage_by_model` maps a model code to its exact drawdown."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="statements")
    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="statements")
    period_start = models.DateField()
    period_end = models.DateField()
    label = models.CharField(max_length=16)
    currency = currency_field()
    opening = amount_field()
    topups = amount_field()
    usage = amount_field()
    closing = amount_field()
    usage_by_model = models.JSONField(default=dict, blank=True)
    drawn_at = models.DateTimeField()

    class Meta:
        ordering = ["period_start", "account"]
        constraints = [
            models.UniqueConstraint(fields=["account", "period_start"], name="statement_unique_period"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.label}"
