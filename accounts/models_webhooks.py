"""Reseller webhooks: the URLs an account registered, and every delivery with its attempts.

A delivery row is written in the same transaction as the business event it announces (an outbox):
an invoice that was issued always has its `invoice.issued` delivery, and a rolled-back payment has
none. The Celery task then POSTs it, with retries, logging each attempt.

The signing secret is kept in the clear: HMAC needs it to sign, unlike an API key that only needs
to be recognised (keys are stored hashed).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from distributor.money import amount_field

WEBHOOK_EVENTS: tuple[str, ...] = (
    "invoice.issued",
    "payment.received",
    "account.on_hold",
    "account.suspended",
    "prepaid.low_balance",
)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEndpoint(models.Model):
    """A URL `account` registered for events about itself and its subtree. Deleting it over the
    API deactivates it: its delivery log stays."""

    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="Signs each delivery (HMAC-SHA256)")
    events = ArrayField(models.CharField(max_length=32))
    low_balance_below = amount_field(
        null=True, blank=True, help_text="prepaid.low_balance fires when a prepaid wallet falls below this"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(events__contained_by=list(WEBHOOK_EVENTS)) & models.Q(events__len__gt=0),
                name="webhook_endpoint_events_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(low_balance_below__isnull=True) | models.Q(low_balance_below__gte=0),
                name="webhook_endpoint_threshold_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["account", "active"], name="webhook_endpoint_account")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.url}"


class WebhookDelivery(models.Model):
    """One event for one endpoint. `dedupe_key` makes emitting the same event twice a no-op."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    event = models.CharField(max_length=32)
    event_id = models.UUIDField(help_text="Shared by every endpoint's delivery of one event")
    dedupe_key = models.CharField(max_length=200)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "dedupe_key"], name="webhook_delivery_unique_event"),
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values), name="webhook_delivery_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what the receiver answered, or why it could not be reached."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempt = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "attempt"], name="webhook_attempt_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.attempt}: {self.status_code or self.error}"
