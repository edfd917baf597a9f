"""Risk (§9, §11.6, §11.7, §11.10, §11.11, §11.14): the versioned provision matrix per book (which
also sets the book's aging edges), the month-end provisioning runs, the daily exposure snapshots,
and invoice write-offs with their recoveries.

Only `settlement.services.provisioning` writes these rows (and the snapshot job, through it). The
money itself lives in the ledger: each run, write-off and recovery points at the entry it posted.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from distributor.money import amount_field, currency_field

__all__ = [
    "ExposureSnapshot",
    "ProvisionMatrix",
    "ProvisionRate",
    "ProvisionRun",
    "WriteOff",
    "WriteOffRecovery",
]


class ProvisionMatrix(models.Model):
    """One version of a book's loss rates per aging bucket (IFRS 9 simplified approach). A change is
    a new version; old versions are kept so every run can say which rates it used. `edges` are the
    upper day limits of the buckets after `current` (default 0, 30, 60, 90, 180)."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="provision_matrices")
    version = models.PositiveIntegerField()
    effective_from = models.DateField(help_text="First day (in the book's zone) the rates apply")
    edges = models.JSONField(help_text="Bucket edges in days past due, e.g. [0, 30, 60, 90, 180]")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["book", "-version"]
        verbose_name_plural = "provision matrices"
        constraints = [
            models.UniqueConstraint(fields=["book", "version"], name="provision_matrix_unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.book_id} v{self.version} from {self.effective_from}"


class ProvisionRate(models.Model):
    """The expected loss rate of one bucket of a matrix version (0 to 1)."""

    matrix = models.ForeignKey(ProvisionMatrix, on_delete=models.CASCADE, related_name="rates")
    position = models.PositiveSmallIntegerField()
    bucket = models.CharField(max_length=16)
    rate = models.DecimalField(max_digits=12, decimal_places=10)

    class Meta:
        ordering = ["matrix", "position"]
        constraints = [
            models.UniqueConstraint(fields=["matrix", "bucket"], name="provision_rate_unique_bucket"),
            models.CheckConstraint(
                condition=models.Q(rate__gte=0) & models.Q(rate__lte=1), name="provision_rate_between_0_and_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bucket}: {self.rate}"


class ProvisionRun(models.Model):
    """The provisioning of one book, currency and month (in the book's zone): what the matrix
    required, what the allowance held, and the change posted (positive = more allowance). Unique per
    (book, currency, period), so a rerun in the same month posts nothing more."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="provision_runs")
    currency = currency_field()
    period_start = models.DateField()
    label = models.CharField(max_length=16)
    as_of = models.DateTimeField()
    matrix = models.ForeignKey(ProvisionMatrix, on_delete=models.PROTECT, related_name="runs")
    receivables = amount_field(help_text="Open receivables aged as of the run")
    required = amount_field(help_text="Σ bucket x rate, rounded once half-up to the minor unit")
    balance_before = amount_field(help_text="The allowance's ledger balance before the run")
    change = amount_field(help_text="Posted: required - balance_before (negative = a release)")
    entry = models.ForeignKey(
        "ledger.JournalEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "book", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["book", "currency", "period_start"], name="provision_run_unique_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.book_id} {self.label} {self.currency}: {self.required}"


class ExposureSnapshot(models.Model):
    """A book's exposure in one currency at the end of one day (book's zone), kept for the history
    the dashboards chart. One row per (book, currency, day); the daily job never rewrites a day."""

    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="exposure_snapshots")
    currency = currency_field()
    day = models.DateField()
    as_of = models.DateTimeField()
    upstream_prepaid = amount_field()
    unbilled = amount_field()
    receivables = amount_field()
    gross = amount_field()
    customer_deposits = amount_field()
    upstream_payables = amount_field()
    net = amount_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["book", "currency", "day"]
        constraints = [
            models.UniqueConstraint(fields=["book", "currency", "day"], name="exposure_snapshot_unique_day"),
        ]

    def __str__(self) -> str:
        return f"{self.book_id} {self.currency} {self.day}: net {self.net}"


class WriteOff(models.Model):
    """An invoice's open amount written off in the issuer's book: against the allowance first, any
    excess to bad-debt expense (§11.10). `recovered` grows as later payments reverse it."""

    invoice = models.OneToOneField("settlement.Invoice", on_delete=models.PROTECT, related_name="write_off")
    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="write_offs")
    currency = currency_field()
    amount = amount_field()
    against_allowance = amount_field()
    expensed = amount_field()
    recovered = amount_field(default=0)
    at = models.DateTimeField()
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)
    entry = models.ForeignKey("ledger.JournalEntry", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="write_off_positive"),
            models.CheckConstraint(
                condition=models.Q(amount=models.F("against_allowance") + models.F("expensed")),
                name="write_off_adds_up",
            ),
            models.CheckConstraint(
                condition=models.Q(recovered__gte=0) & models.Q(recovered__lte=models.F("amount")),
                name="write_off_recovered_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"write-off of {self.invoice_id}: {self.amount} {self.currency}"


class WriteOffRecovery(models.Model):
    """Part of a payment that landed on a written-off invoice: the write-off is reversed by that
    much (expense first, then allowance) and the payment applied as usual."""

    write_off = models.ForeignKey(WriteOff, on_delete=models.PROTECT, related_name="recoveries")
    payment = models.ForeignKey("settlement.Payment", on_delete=models.PROTECT, related_name="recoveries")
    amount = amount_field()
    to_expense = amount_field()
    to_allowance = amount_field()
    at = models.DateTimeField()
    entry = models.ForeignKey("ledger.JournalEntry", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="write_off_recovery_positive"),
            models.UniqueConstraint(fields=["write_off", "payment"], name="write_off_recovery_once"),
        ]

    def __str__(self) -> str:
        return f"recovery of {self.write_off_id} by payment {self.payment_id}: {self.amount}"
