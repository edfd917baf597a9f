"""Celery tasks of dunning: thin wrappers taking ids and ISO times, one service each."""

from __future__ import annotations

from distributor.celery import app
from distributor.clock import task_moment


@app.task(name="settlement.dunning_run", soft_time_limit=900, time_limit=1000, max_retries=3)
def dunning_run_task(book_id: int, as_of_iso: str | None = None) -> int:
    """Dun one book's late payers. Safe to retry: a level is taken once per invoice."""
    from ledger.models import Book
    from settlement.services.dunning import dunning_run

    return len(dunning_run(book=Book.objects.get(pk=book_id), as_of=task_moment(as_of_iso)))


@app.task(name="settlement.dunning_run_all", soft_time_limit=120, time_limit=180)
def dunning_run_all_task(as_of_iso: str | None = None) -> int:
    """Beat's entry: one dunning task per book, so one book's trouble never holds up the others."""
    from ledger.models import Book

    moment = task_moment(as_of_iso).isoformat()
    book_ids = list(Book.objects.order_by("pk").values_list("pk", flat=True))
    for book_id in book_ids:
        dunning_run_task.delay(book_id, moment)
    return len(book_ids)
