"""The Celery app and the one beat schedule. Every periodic job is listed here with why it runs;
the README's month-end runbook mirrors this table."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "distributor.settings")

app = Celery("distributor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# name -> {task, schedule, why}. Later issues add the close, issuing, provisioning and dunning.
app.conf.beat_schedule = {}


@app.task(name="distributor.ping")
def ping() -> str:
    """A liveness probe for workers: returns "pong"."""
    return "pong"


@app.task(name="distributor.books_count")
def books_count() -> int:
    """A readiness probe that needs the database: how many books the worker can see."""
    from ledger.models import Book

    return Book.objects.count()
