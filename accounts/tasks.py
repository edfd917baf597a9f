"""Celery tasks of the accounts app: webhook delivery (with retries) and the low-balance check."""

from __future__ import annotations

from celery import shared_task

from accounts.webhooks import BACKOFF_BASE_SECONDS, prepaid_low_balance_check, webhook_deliver


@shared_task(name="accounts.webhook_deliver", soft_time_limit=60)
def webhook_deliver_task(delivery_id: int) -> str:
    """POST one delivery; on failure schedule the next attempt with exponential backoff (30 s,
    60 s, 120 s, ...). The attempt count lives on the delivery row, not in the Celery message, so a
    lost or duplicated message neither resets the schedule nor sends past the last attempt."""
    outcome = webhook_deliver(delivery_id=delivery_id)
    if outcome.retry:
        webhook_deliver_task.apply_async(
            (delivery_id,), countdown=BACKOFF_BASE_SECONDS * 2 ** (outcome.attempt - 1)
        )
        return "retrying"
    return "delivered" if outcome.delivered else "failed"


@shared_task(name="accounts.prepaid_low_balance_check", soft_time_limit=300)
def prepaid_low_balance_check_task() -> int:
    """Alert subscribed endpoints of prepaid wallets under their threshold."""
    return prepaid_low_balance_check()
