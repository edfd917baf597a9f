"""A real Celery worker process on Redis runs our tasks against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from distributor.celery import app as celery_app
from distributor.celery import books_count, ping
from ledger.services import book_create

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (CI sets it)")


def _test_database_url() -> str:
    db = connection.settings_dict
    host = db["HOST"] or "127.0.0.1"
    if host.startswith("/"):
        return f"postgres://{db['USER']}@/{db['NAME']}?host={host}"
    port = db["PORT"] or "5432"
    return f"postgres://{db['USER']}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "REDIS_URL": settings.REDIS_URL}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "distributor",
            "worker",
            "-P",
            "solo",
            "-l",
            "warning",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"worker exited early: {out}")
            if celery_app.control.ping(timeout=0.5):
                break
        else:
            pytest.fail("worker did not answer a ping within 60 s")
        yield proc
    finally:
        celery_app.conf.CELERY_TASK_ALWAYS_EAGER = True
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_tasks_against_the_database(worker: subprocess.Popen[bytes]) -> None:
    book_create(code="platform", name="Platform Ltd", currency="USD")
    book_create(code="alpha", name="Alpha Reseller", currency="USD")

    assert ping.delay().get(timeout=30) == "pong"
    # The worker sees what this test committed: two books.
    assert books_count.delay().get(timeout=30) == 2
