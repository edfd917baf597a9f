"""Dunning (§9, §11.9): the levels a book chases late payers through, each account's dunning state,
the steps taken (one row per level reached per invoice, and one per lift), and where reminders go.

Only `settlement.services.dunning` writes these rows. The account's own `status` stays in accounts
(written through `accounts.services.account_update`, audited); `DunningState.status_set` remembers
which status dunning itself put there, so that a lift never undoes a hold finance set by hand.
"""

from __future__ import annotations

from django.db import models

from distributor.money import amount_field, currency_field

__all__ = ["DunningAction", "DunningContact", "DunningLevel", "DunningState", "DunningStep"]


class DunningAction(models.TextChoices):
    REMINDER = "reminder"
    ON_HOLD = "on_hold"
    SUSPENDED = "suspended"
    LIFTED = "lifted"


class DunningLevel(models.Model):
    """From `days` past due, the book takes `action`. Levels are replaced as a set per book."""

    book = models.ForeignKey("ledger.Book", on_delete=models.CASCADE, related_name="dunning_levels")
    days = models.PositiveIntegerField(help_text="Days past due (calendar dates in the book's zone)")
    action = models.CharField(
        max_length=16,
        choices=[(a.value, a.label) for a in DunningAction if a != DunningAction.LIFTED],
    )

    class Meta:
        ordering = ["book", "days"]
        constraints = [
            models.UniqueConstraint(fields=["book", "days"], name="dunning_level_unique_days"),
            models.CheckConstraint(condition=models.Q(days__gte=1), name="dunning_level_after_due"),
            models.CheckConstraint(
                condition=models.Q(action__in=["reminder", "on_hold", "suspended"]),
                name="dunning_level_action_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.book_id}: {self.action} from {self.days} days"


class DunningState(models.Model):
    """Where an account stands in dunning: `active` (nothing beyond reminders), `on_hold` or
    `suspended`. It only escalates until no past-due debt remains; then it is lifted."""

    account = models.OneToOneField("accounts.Account", on_delete=models.PROTECT, related_name="dunning_state")
    state = models.CharField(max_length=16, default="active")
    status_set = models.CharField(
        max_length=16, blank=True, help_text="The account status dunning wrote ('' = it wrote none)"
    )
    since = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=["active", "on_hold", "suspended"]), name="dunning_state_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.state}"


class DunningStep(models.Model):
    """One step taken: a level reached on an invoice (once per invoice and level), or a lift."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="dunning_steps")
    book = models.ForeignKey("ledger.Book", on_delete=models.PROTECT, related_name="dunning_steps")
    invoice = models.ForeignKey(
        "settlement.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="dunning_steps"
    )
    action = models.CharField(max_length=16, choices=DunningAction.choices)
    level_days = models.PositiveIntegerField(null=True, blank=True)
    days_past_due = models.IntegerField(null=True, blank=True)
    amount_due = amount_field(default=0, help_text="Past-due debt of the account when the step was taken")
    currency = currency_field()
    at = models.DateTimeField(help_text="The `as_of` of the run (or the payment time of a lift)")
    status_before = models.CharField(max_length=16, blank=True)
    status_after = models.CharField(max_length=16, blank=True)
    emailed_to = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            # The idempotency of a run: a level is reached once per invoice, whatever reruns do.
            models.UniqueConstraint(
                fields=["invoice", "level_days"],
                condition=models.Q(invoice__isnull=False),
                name="dunning_step_once_per_invoice_level",
            ),
        ]
        indexes = [models.Index(fields=["book", "at"], name="dunning_step_book_at")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.action} at {self.at:%Y-%m-%d}"


class DunningContact(models.Model):
    """Where an account's reminders go. Without one, reminders go to DUNNING_FALLBACK_EMAIL (the
    finance team), so that nobody is dunned silently."""

    account = models.OneToOneField(
        "accounts.Account", on_delete=models.CASCADE, related_name="dunning_contact"
    )
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.account_id}: {self.email}"
