"""Celery tasks of the close: thin wrappers taking ids, one service each. The lead imports them
into settlement/tasks.py; the beat entries are proposed in docs/close.md."""

from __future__ import annotations

from distributor.celery import app
from distributor.clock import task_moment


@app.task(name="settlement.close_run", soft_time_limit=1800, time_limit=2000, max_retries=3)
def close_run_task(book_id: int, now_iso: str | None = None) -> list[str]:
    """Close one book's ended periods. Safe to retry: the run resumes where it stopped."""
    from ledger.models import Book
    from settlement.services.close import close_run

    runs = close_run(book=Book.objects.get(pk=book_id), now=task_moment(now_iso))
    return [f"{r.label}:{r.status}" for r in runs]


@app.task(name="settlement.drafts_issue_due", soft_time_limit=1800, time_limit=2000, max_retries=3)
def drafts_issue_due_task(book_id: int, now_iso: str | None = None) -> list[str]:
    """Issue one book's drafts whose grace has passed."""
    from ledger.models import Book
    from settlement.services.invoicing import drafts_issue_due

    return [
        i.number or "" for i in drafts_issue_due(book=Book.objects.get(pk=book_id), now=task_moment(now_iso))
    ]


@app.task(name="settlement.close_all_books", soft_time_limit=120, time_limit=180)
def close_all_books_task(now_iso: str | None = None) -> int:
    """Beat's entry: one close task and then one issue task per book (a chain per book), so a
    large book never blocks the others and each can be retried alone."""
    from celery import chain

    from ledger.models import Book

    moment = task_moment(now_iso).isoformat()
    book_ids = list(Book.objects.order_by("pk").values_list("pk", flat=True))
    for book_id in book_ids:
        chain(close_run_task.si(book_id, moment), drafts_issue_due_task.si(book_id, moment)).apply_async()
    return len(book_ids)
