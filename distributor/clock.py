"""The time a Celery task runs "as of": tasks travel as JSON, so a moment comes as an ISO string
(with its zone), or is the worker's own clock."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def task_moment(iso: str | None) -> datetime:
    if not iso:
        return timezone.now()
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        raise ValueError(f"a task's timestamp must carry a time zone: {iso!r}")
    return moment
