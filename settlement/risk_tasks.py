"""Celery tasks of risk: the daily exposure snapshot and month-end provisioning. Thin wrappers
taking ids and ISO timestamps, one service each; both are idempotent, so retries and a doubled beat
are harmless (beat entries: distributor/celery.py)."""

from __future__ import annotations

from django.utils import timezone

from distributor.celery import app
from distributor.clock import task_moment


@app.task(name="settlement.exposure_snapshot_all", soft_time_limit=600, time_limit=700, max_retries=3)
def exposure_snapshot_all_task(now_iso: str | None = None) -> int:
    """Snapshot every book's exposure at the end of its last ended day (one row per day, kept)."""
    from settlement.services.provisioning import exposure_snapshots_take_all

    return exposure_snapshots_take_all(now=task_moment(now_iso))


@app.task(name="settlement.provision_run", soft_time_limit=600, time_limit=700, max_retries=3)
def provision_run_task(book_id: int, as_of_iso: str | None = None) -> list[str]:
    """Provision one book as of `as_of` (default: the end of its latest ended month)."""
    from ledger.models import Book
    from settlement.services.provisioning import month_end_before, provision_run

    book = Book.objects.get(pk=book_id)
    as_of = task_moment(as_of_iso) if as_of_iso else month_end_before(book=book, now=timezone.now())
    result = provision_run(book=book, as_of=as_of)
    return [f"{result.period} {line.currency}: {line.required} ({line.change:+})" for line in result.lines]


@app.task(name="settlement.provision_all_books", soft_time_limit=120, time_limit=180)
def provision_all_books_task(now_iso: str | None = None) -> int:
    """Beat's month-end entry: one provisioning task per book, each as of the end of the book's
    latest ended month, so a large book never blocks the others and each can be retried alone."""
    from ledger.models import Book
    from settlement.services.provisioning import month_end_before

    now = task_moment(now_iso)
    books = list(Book.objects.order_by("pk"))
    for book in books:
        provision_run_task.delay(book.pk, month_end_before(book=book, now=now).isoformat())
    return len(books)
