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
    "dunning-run-all": {
        "task": "settlement.dunning_run_all",
        "schedule": crontab(minute=30, hour=1),
        # Why: late payers move up a dunning level (reminder, hold, suspension) once per day past due;
        # daily is the rule's grain, and 01:30 UTC lands in the business morning of Asian books.
    },
    "exposure-snapshot-all": {
        "task": "settlement.exposure_snapshot_all",
        "schedule": crontab(minute=20),
        # Why: the exposure history keeps one row per book and day as of the day's end in the book's
        # zone; hourly catches every zone's midnight, and a day already taken is never rewritten.
    },
    "provision-all-books": {
        "task": "settlement.provision_all_books",
        "schedule": crontab(minute=45, day_of_month="1,2"),
        # Why: month-end bad-debt provisioning once each book's month has ended in its own zone
        # (days 1-2 UTC cover zones behind UTC); a rerun in the same month posts nothing.
    },
    "prepaid-low-balance-check": {
        "task": "accounts.prepaid_low_balance_check",
        "schedule": crontab(minute="*/15"),
        # Why: resellers hear (webhook) that a prepaid wallet runs low before its calls are refused;
        # one alert per wallet per top-up, so running often costs nothing but a query.
    },
}


# For the end-to-end test (tests/deploy/test_processes.py) and staging: every job every N seconds
# instead of its crontab, so a real beat runs the month end within seconds. Never set in production.
_beat_every = os.environ.get("DISTRIBUTOR_BEAT_EVERY_SECONDS", "")
if _beat_every:
    if not _beat_every.isdigit() or int(_beat_every) < 1:
        raise ValueError(
            f"DISTRIBUTOR_BEAT_EVERY_SECONDS must be a whole number of seconds, got {_beat_every!r}"
        )
    for _job in app.conf.beat_schedule.values():
        _job["schedule"] = float(_beat_every)


@app.task(name="distributor.ping")
def ping() -> str:
    """A liveness probe for workers: returns "pong"."""
    return "pong"


@app.task(name="distributor.books_count")
def books_count() -> int:
    """A readiness probe that needs the database: how many books the worker can see."""
    from ledger.models import Book

    return Book.objects.count()
