"""The Celery app and the one beat schedule. Every periodic job is listed here with why it runs;
the README's month-end runbook mirrors this table."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "distributor.settings")

app = Celery("distributor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# name -> {task, schedule, why}. Every job is idempotent, so a run missed or doubled by a beat
# restart is harmless; hourly runs cover books in every time zone within the hour.
app.conf.beat_schedule = {
    "usage-partitions-ensure": {
        "task": "settlement.usage_partitions_ensure",
        "schedule": crontab(minute=5, hour=0),
        # Why: next months' event partitions exist before the first event of the month lands.
    },
    "purchases-expire-due": {
        "task": "procurement.purchases_expire_due",
        "schedule": crontab(minute=0),
        # Why: quota credit lapses at midnight in its book's zone; breakage is booked within the hour.
    },
    "close-all-books": {
        "task": "settlement.close_all_books",
        "schedule": crontab(minute=15),
        # Why: each book closes its ended periods (drafts, statements) and then issues the drafts
        # whose grace has passed, as soon as the period has ended in the book's own zone.
    },
}


@app.task(name="distributor.ping")
def ping() -> str:
    """A liveness probe for workers: returns "pong"."""
    return "pong"


@app.task(name="distributor.books_count")
def books_count() -> int:
    """A readiness probe that needs the database: how many books the worker can see."""
    from ledger.models import Book

    return Book.objects.count()
