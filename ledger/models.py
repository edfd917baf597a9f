"""The books (§8): one per legal entity, a chart of accounts per book, journal entries and their
postings, and per-account running balances.

Entries and postings are append-only. The database enforces it (migration 0002): a deferred
constraint trigger refuses an entry whose postings do not balance per currency, row triggers refuse
UPDATE and DELETE, and CHECK constraints refuse non-positive amounts.
"""

from __future__ import annotations

from django.db import models

from distributor.money import amount_field, currency_field

# Exchange rates carry up to 10 places, like unit prices (§2).
RATE_MAX_DIGITS = 24
RATE_DECIMAL_PLACES = 10


class AccountType(models.TextChoices):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"


class Side(models.TextChoices):
    DEBIT = "debit"
    CREDIT = "credit"


# The chart every book gets at creation (§8): code, name, type, normal side.
# The allowance is a contra-asset: an asset-side account whose normal balance is a credit.
CHART_OF_ACCOUNTS: tuple[tuple[str, str, str, str], ...] = (
    ("cash", "Cash", AccountType.ASSET, Side.DEBIT),
    ("receivables", "Accounts receivable", AccountType.ASSET, Side.DEBIT),
    ("upstream_prepayments", "Upstream prepayments", AccountType.ASSET, Side.DEBIT),
    ("allowance", "Allowance for doubtful accounts", AccountType.ASSET, Side.CREDIT),
    ("customer_deposits", "Customer deposits", AccountType.LIABILITY, Side.CREDIT),
    ("upstream_payables", "Upstream payables", AccountType.LIABILITY, Side.CREDIT),
    ("tax_payable", "Tax payable", AccountType.LIABILITY, Side.CREDIT),
    ("equity", "Owner's equity", AccountType.EQUITY, Side.CREDIT),
    ("revenue", "Revenue", AccountType.REVENUE, Side.CREDIT),
    ("cost_of_sales", "Cost of sales", AccountType.EXPENSE, Side.DEBIT),
    ("breakage_loss", "Breakage loss", AccountType.EXPENSE, Side.DEBIT),
    ("bad_debt_expense", "Bad-debt expense", AccountType.EXPENSE, Side.DEBIT),
    ("fx", "FX gains and losses", AccountType.EXPENSE, Side.DEBIT),
)


class Book(models.Model):
    """The books of one legal entity: the root distributor, or a distributor billing its children."""

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = currency_field(help_text="Base currency")
    timezone = models.CharField(max_length=64, default="UTC", help_text="Billing periods follow this zone")
    grace_days = models.PositiveIntegerField(default=0, help_text="Days before drafts are issued")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class LedgerAccount(models.Model):
    """One row of a book's chart of accounts."""

    book = models.ForeignKey(Book, on_delete=models.PROTECT, related_name="ledger_accounts")
    code = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=AccountType.choices)
    normal_side = models.CharField(max_length=6, choices=Side.choices)

    class Meta:
        ordering = ["book", "code"]
        constraints = [models.UniqueConstraint(fields=["book", "code"], name="ledger_account_unique_code")]

    def __str__(self) -> str:
        return f"{self.book.code}:{self.code}"


class JournalEntry(models.Model):
    """A balanced, immutable business event. `reverses` links a correction to what it mirrors."""

    book = models.ForeignKey(Book, on_delete=models.PROTECT, related_name="entries")
    idempotency_key = models.CharField(max_length=200)
    content_hash = models.CharField(max_length=64)
    occurred_at = models.DateTimeField(db_index=True)
    posted_at = models.DateTimeField(auto_now_add=True)
    description = models.CharField(max_length=500, blank=True)
    source_type = models.CharField(max_length=64, blank=True, help_text="e.g. invoice, payment, usage_batch")
    source_id = models.CharField(max_length=200, blank=True)
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "journal entries"
        # Reversing is the one correction the read-only admin offers; it moves money, so it is a
        # permission of its own rather than "change" (which nobody holds on posted rows).
        permissions = [("reverse_journalentry", "Can reverse journal entries")]
        constraints = [
            models.UniqueConstraint(fields=["book", "idempotency_key"], name="journal_entry_unique_key")
        ]
        indexes = [models.Index(fields=["source_type", "source_id"], name="journal_entry_source")]

    def __str__(self) -> str:
        return f"{self.book.code}#{self.pk} {self.description}"


class Posting(models.Model):
    """One leg of an entry: a positive amount on one side of a ledger account, per counterparty.

    `counterparty` is the dimension that keeps receivables, deposits and payables per customer or
    provider: "account:<code>" for an account of the tree, "provider:<code>" for a provider, "" for none.
    """

    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    ledger_account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings")
    counterparty = models.CharField(max_length=100, blank=True, default="")
    side = models.CharField(max_length=6, choices=Side.choices)
    amount = amount_field()
    currency = currency_field()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="posting_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(side__in=["debit", "credit"]), name="posting_side_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["ledger_account", "counterparty", "currency"], name="posting_account_cp")
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.currency} {self.counterparty}".strip()


class AccountBalance(models.Model):
    """Running totals per (ledger account, counterparty, currency), updated in the posting
    transaction so that a balance read is one row. `ledger_check_balances` recomputes them."""

    ledger_account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="balances")
    counterparty = models.CharField(max_length=100, blank=True, default="")
    currency = currency_field()
    debits = amount_field(default=0)
    credits = amount_field(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ledger_account", "counterparty", "currency"], name="account_balance_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.ledger_account_id}/{self.counterparty}/{self.currency}: {self.debits - self.credits}"


class ExchangeRate(models.Model):
    """A dated rate for one currency pair (§2): one unit of `base` is worth `rate` units of `quote`.

    Rates are data entered or imported by finance and are append-only (a trigger refuses UPDATE and
    DELETE, migration 0003): a correction is a new rate with a later `effective_at`, so every
    conversion keeps pointing at the rate it used.
    """

    base = currency_field()
    quote = currency_field()
    rate = models.DecimalField(max_digits=RATE_MAX_DIGITS, decimal_places=RATE_DECIMAL_PLACES)
    effective_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["base", "quote", "-effective_at"]
        constraints = [
            # Its index also serves the "latest rate at or before" lookup (a backward scan).
            models.UniqueConstraint(fields=["base", "quote", "effective_at"], name="exchange_rate_unique_at"),
            models.CheckConstraint(condition=models.Q(rate__gt=0), name="exchange_rate_positive"),
            models.CheckConstraint(
                condition=~models.Q(base=models.F("quote")), name="exchange_rate_two_currencies"
            ),
        ]

    def __str__(self) -> str:
        return f"1 {self.base} = {self.rate} {self.quote} from {self.effective_at.isoformat()}"
