"""The close survives a killed worker (issue 5, reliability): a real Celery worker on Redis runs
`settlement.close_run` for a book of 40 customers in chunks of 5, is SIGKILLed half-way, and a new
worker runs the task again; then the issue job is killed half-way through numbering and run again.
Every account ends with exactly one invoice, the numbers are gapless, the books balance, and a
third run changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from distributor.celery import app as celery_app
from ledger.models import Book, JournalEntry
from ledger.selectors import trial_balance
from settlement.close_tasks import close_run_task, drafts_issue_due_task
from settlement.models import CloseRun, Invoice, InvoiceStatus
from settlement.services.close import CHUNK_ENV, PAUSE_ENV
from tests.distributor.test_celery_worker import _test_database_url
from tests.settlement.test_close_concurrency import extra_customers
from tests.settlement.test_close_world import NOV_1, D, world_build

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 40
CHUNK = 5

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (CI sets it)")


class Workers:
    """Starts real `celery worker` processes, each in its own process group so a SIGKILL takes the
    whole worker down at once, and stops whatever is left at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.log_files: list[Any] = []
        self.logs = tempfile.TemporaryDirectory(prefix="close-crash-")

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        n = len(self.started)
        env = {
            **{k: v for k, v in os.environ.items() if k != PAUSE_ENV},
            "DATABASE_URL": _test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            CHUNK_ENV: str(CHUNK),
            **extra_env,
        }
        log = open(Path(self.logs.name) / f"worker-{n}.log", "wb")  # noqa: SIM115 (closed in stop_all)
        self.log_files.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "distributor", "worker", "-P", "solo", "-l", "warning"]
            + ["-n", f"crash-{os.getpid()}-{n}@%h"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(proc)
        name = f"crash-{os.getpid()}-{n}@"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"worker exited early:\n{self.log_of(n)}")
            replies = celery_app.control.ping(timeout=0.5) or []
            if any(name in host for reply in replies for host in reply):
                return proc
        pytest.fail("worker did not answer a ping within 60 s")

    def log_of(self, n: int) -> str:
        return (Path(self.logs.name) / f"worker-{n}.log").read_text(errors="replace")

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.kill(proc)
        for log in self.log_files:
            log.close()
        self.logs.cleanup()


@pytest.fixture
def workers() -> Iterator[Workers]:
    import redis

    broker = redis.Redis.from_url(settings.REDIS_URL)
    celery_app.control.purge()
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    pool = Workers()
    try:
        yield pool
    finally:
        celery_app.conf.CELERY_TASK_ALWAYS_EAGER = True
        pool.stop_all()
        # A killed worker leaves its message unacknowledged (acks_late): Redis would hand it to some
        # worker an hour from now, against a database that no longer exists.
        broker.delete("unacked", "unacked_index")
        celery_app.control.purge()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def state(book: Book) -> tuple[list[tuple[Any, ...]], int]:
    invoices = list(
        Invoice.objects.filter(issuer_book=book)
        .order_by("account__code")
        .values_list("account__code", "number", "status", "total", "drafted_at", "issued_at")
    )
    return invoices, JournalEntry.objects.count()


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_close_and_mid_issue_leaves_one_invoice_per_account(workers: Workers) -> None:
    world = world_build()
    # 40 customers of the root, each with one October call: 100M input x 0.30 = 30.00, no tax.
    extra_customers(world, CUSTOMERS)
    book = world.book
    moment = NOV_1.isoformat()
    invoices = Invoice.objects.filter(issuer_book=book)

    # 1. The close, killed after some chunks have committed. The platform book bills alpha (no
    # usage: no invoice), devsolo (prepaid: a statement) and the 40 customers: 9 chunks of 5.
    first = workers.start(**{PAUSE_ENV: "0.4"})
    close_run_task.delay(book.pk, moment)
    wait_for(lambda: invoices.count() >= 10, "the first chunks of drafts")
    workers.kill(first)
    run = CloseRun.objects.get(book=book)
    assert run.status == "running" and run.last_account_id > 0
    assert 10 <= invoices.count() < CUSTOMERS

    # 2. Run again in a new worker: it resumes after the last committed chunk.
    second = workers.start(**{PAUSE_ENV: "0.2"})
    assert close_run_task.delay(book.pk, moment).get(timeout=60) == ["2026-10:done"]
    assert invoices.count() == CUSTOMERS and not invoices.exclude(status=InvoiceStatus.DRAFT).exists()

    # 3. The issue job (grace 0: all due), killed after some invoices have been numbered.
    drafts_issue_due_task.delay(book.pk, moment)
    wait_for(lambda: invoices.filter(status=InvoiceStatus.ISSUED).count() >= 5, "the first issued invoices")
    workers.kill(second)
    part = invoices.filter(status=InvoiceStatus.ISSUED).count()
    assert 5 <= part < CUSTOMERS

    # 4. Run again in a new worker, without pauses: the rest are numbered after the last one issued.
    workers.start()
    numbers = drafts_issue_due_task.delay(book.pk, moment).get(timeout=60)
    assert len(numbers) == CUSTOMERS - part
    assert invoices.count() == CUSTOMERS
    assert sorted(invoices.values_list("account__code", flat=True)) == sorted(
        f"cust{i}" for i in range(CUSTOMERS)
    )
    assert sorted(invoices.values_list("number", flat=True)) == [
        f"PLATFORM-2026-{n:06d}" for n in range(1, CUSTOMERS + 1)
    ]
    assert set(invoices.values_list("status", "total")) == {("issued", D("30.00"))}
    assert CloseRun.objects.get(book=book).status == "done"
    # Receivables 40 x 30.00 = 1,200.00 against revenue, plus the quota purchase and top-up: balanced.
    assert [row["difference"] for row in trial_balance(book=book)] == [D(0)]
    assert JournalEntry.objects.filter(source_type="invoice").count() == CUSTOMERS

    # 5. A third run of both tasks changes nothing.
    before = state(book)
    assert close_run_task.delay(book.pk, moment).get(timeout=60) == ["2026-10:done"]
    assert drafts_issue_due_task.delay(book.pk, moment).get(timeout=60) == []
    assert state(book) == before
