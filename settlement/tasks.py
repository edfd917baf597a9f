"""Settlement's Celery tasks: thin wrappers that call one service each."""

from __future__ import annotations

from django.utils import timezone

from distributor.celery import app
from settlement.close_tasks import close_all_books_task, close_run_task, drafts_issue_due_task
from settlement.dunning_tasks import dunning_run_all_task, dunning_run_task
from settlement.risk_tasks import exposure_snapshot_all_task, provision_all_books_task, provision_run_task

__all__ = [
    "close_all_books_task",
    "close_run_task",
    "credit_states_refresh_task",
    "drafts_issue_due_task",
    "dunning_run_all_task",
    "dunning_run_task",
    "exposure_snapshot_all_task",
    "provision_all_books_task",
    "provision_run_task",
    "usage_partitions_ensure_task",
]


@app.task(name="settlement.usage_partitions_ensure", soft_time_limit=60, time_limit=120)
def usage_partitions_ensure_task(months_ahead: int = 3) -> list[str]:
    """Create this month's and the next months' usage partitions before events need them
    (beat: daily). Ingestion also creates a missing month on demand, so a missed run is harmless."""
    from settlement.services.partitions import usage_partitions_ahead

    return usage_partitions_ahead(today=timezone.now().date(), months_ahead=months_ahead)


@app.task(name="settlement.credit_states_refresh", soft_time_limit=60, time_limit=120)
def credit_states_refresh_task(account_ids: list[int]) -> int:
    """Refresh the authorize cache of these accounts (after a status, limit or payment change)."""
    from settlement.services.credit_control import credit_states_refresh

    return len(credit_states_refresh(account_ids=account_ids))
