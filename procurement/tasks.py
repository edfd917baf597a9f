"""Procurement's Celery tasks: thin wrappers that take ids and call one service each.

Beat (distributor/celery.py, owned by the lead) should run `procurement.purchases_expire_due`
hourly: credit lapses at midnight in each book's zone, so an hourly run books breakage within the
hour whatever the zone. Reruns are harmless (each purchase expires once).
"""

from __future__ import annotations

from django.db.models import Q

from distributor.celery import app
from distributor.clock import task_moment


@app.task(
    name="procurement.purchases_expire",
    soft_time_limit=120,
    time_limit=180,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def purchases_expire_task(book_id: int, now: str | None = None) -> int:
    """Book breakage for one book's lapsed purchases; returns how many purchases it expired."""
    from ledger.models import Book
    from procurement.services import purchases_expire

    return len(purchases_expire(book=Book.objects.get(pk=book_id), now=task_moment(now)))


@app.task(name="procurement.purchases_expire_due", soft_time_limit=300, time_limit=360)
def purchases_expire_due_task(now: str | None = None) -> int:
    """Expire lapsed purchases in every book that has some, one book at a time (each book in its
    own transaction, so one bad book does not hold up the others' breakage)."""
    from ledger.models import Book
    from procurement.models import QuotaPurchase
    from procurement.services import purchases_expire

    instant = task_moment(now)
    due_books = (
        QuotaPurchase.objects.filter(Q(expires_at__lte=instant), expired_at__isnull=True)
        .values_list("book_id", flat=True)
        .distinct()
    )
    expired = 0
    for book in Book.objects.filter(pk__in=list(due_books)).order_by("pk"):
        expired += len(purchases_expire(book=book, now=instant))
    return expired
