"""The production run, end to end: the real processes started from deploy/bin/ (gunicorn web, a
Celery worker, Celery beat on a short schedule) against the machine's PostgreSQL (a throwaway
database this test creates and drops) and Redis. A month of usage goes in over HTTP, beat runs the
close, and the invoices come back out through the API with the figures worked out below.

Isolation from the rest of the suite: its own database, its own Redis database (REDIS_URL's number
+ 2, or E2E_REDIS_URL), its own Celery queue and cache prefix. Every process runs in its own
process group and the whole group is killed at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from django.conf import settings

from tests.deploy.seed import month_start_before

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "deploy" / "bin"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (CI sets it)"),
    pytest.mark.timeout(150),
]

DAYS = 28  # days 1-28 exist in every month, so the figures below do not depend on the month
HOURS = 24
INPUT_PER_CALL = 1_000_000
OUTPUT_PER_CALL = 250_000
BEAT_EVERY_SECONDS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _e2e_redis_url() -> str:
    explicit = os.environ.get("E2E_REDIS_URL")
    if explicit:
        return explicit
    parsed = urlparse(settings.REDIS_URL)
    number = int(parsed.path.lstrip("/") or 0)
    return parsed._replace(path=f"/{(number + 2) % 16}").geturl()


def _admin_dsn() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    return {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or "5432",
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }


def _database_url(name: str) -> str:
    db = settings.DATABASES["default"]
    host = db["HOST"] or "127.0.0.1"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    if host.startswith("/"):
        return f"postgres://{auth}@/{name}?host={host}"
    return f"postgres://{auth}@{host}:{db['PORT'] or '5432'}/{name}"


@dataclass
class Deployment:
    env: dict[str, str]
    logs: Path
    base_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        # A session of its own: the script's gunicorn or celery and all their children share one
        # process group, which stop() kills as a whole.
        self.processes[name] = subprocess.Popen(
            [str(BIN / name)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        # A few seconds to exit cleanly (a worker finishes its task in hand), then SIGKILL.
        deadline = time.monotonic() + 4
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Children (gunicorn workers, celery pool processes) may outlive their parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def request(self, method: str, path: str, *, key: str | None = None, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read()
                status = response.status
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        return status, (json.loads(raw) if "json" in kind and raw else raw)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    run = uuid.uuid4().hex[:10]
    database = f"e2e_{run}"
    with psycopg.connect(**_admin_dsn()) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    port = _free_port()
    redis_url = _e2e_redis_url()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_TEST_NAME"},
        "PYTHON": sys.executable,
        "DJANGO_SETTINGS_MODULE": "distributor.settings",
        "DJANGO_PRODUCTION": "true",
        "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2,
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": _database_url(database),
        "REDIS_URL": redis_url,
        # Same Redis database as the broker, its own prefix: nothing in these processes clears it.
        "CACHE_REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": f"e2e-{run}",
        "CELERY_DEFAULT_QUEUE": f"e2e-{run}",
        "CELERY_WORKER_NAME": f"e2e-{run}@%h",
        "CELERY_CONCURRENCY": "2",
        "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path / "celerybeat-schedule"),
        "DISTRIBUTOR_BEAT_EVERY_SECONDS": str(BEAT_EVERY_SECONDS),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    deployment = Deployment(env=env, logs=tmp_path, base_url=f"http://127.0.0.1:{port}")
    try:
        yield deployment
    finally:
        deployment.stop()
        with psycopg.connect(**_admin_dsn()) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _wait_until(deployment: Deployment, what: str, check: Any, *, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.alive()
        try:
            found = check()
        except (urllib.error.URLError, ConnectionError, OSError):
            found = None
        if found:
            return found
        time.sleep(0.25)
    logs = "\n".join(f"--- {n}\n{deployment.log_tail(n)}" for n in deployment.processes)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{logs}")


def _money(body: dict[str, str]) -> tuple[Decimal, str]:
    return Decimal(body["amount"]), body["currency"]


def _day_of_usage(month: datetime, day: int) -> list[dict[str, Any]]:
    """acme's gateway traffic for one day: one minimax-m2.5 call per hour."""
    return [
        {
            "request_id": f"acme-{month:%Y%m}-{day:02d}-{hour:02d}",
            "account": "acme",
            "model": "minimax-m2.5",
            "input_tokens": INPUT_PER_CALL,
            "output_tokens": OUTPUT_PER_CALL,
            "occurred_at": month.replace(day=day, hour=hour, minute=30).isoformat(),
        }
        for hour in range(HOURS)
    ]


def test_web_worker_and_beat_bill_a_month_of_usage_end_to_end(deployment: Deployment) -> None:
    started = time.monotonic()
    month = month_start_before(datetime.now(UTC))
    period_end = (month.replace(day=28) + timedelta(days=4)).replace(day=1).date() - timedelta(days=1)

    # The web process migrates the empty database, collects static files and serves.
    deployment.start("web")
    _wait_until(
        deployment, "web /healthz", lambda: deployment.request("GET", "/healthz")[0] == 200, timeout=60
    )
    status, _ = deployment.request("GET", "/static/admin/css/base.css")
    assert status == 200  # collected and served by the web process itself

    seeded = subprocess.run(
        [sys.executable, "-m", "tests.deploy.seed"],
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    keys = json.loads(seeded.stdout.strip().splitlines()[-1])

    # A month of usage over HTTP: one batch per day, 24 calls each; then day 1 again (a retry).
    for day in range(1, DAYS + 1):
        status, body = deployment.request(
            "POST", "/api/v1/usage/batches", key=keys["alpha"], body={"events": _day_of_usage(month, day)}
        )
        assert (status, body["accepted"], body["rejected"]) == (200, HOURS, 0), body
    status, body = deployment.request(
        "POST", "/api/v1/usage/batches", key=keys["alpha"], body={"events": _day_of_usage(month, 1)}
    )
    assert (status, body["accepted"], body["duplicates"]) == (200, 0, HOURS)
    ingested_at = time.monotonic()

    # Only now the worker and beat: the month has ended, so the close drafts and (grace 0) issues.
    deployment.start("worker")
    deployment.start("beat")

    def acme_issued() -> Any:
        status, page = deployment.request("GET", "/api/v1/accounts/acme/invoices", key=keys["alpha"])
        rows = page.get("results", []) if status == 200 else []
        return rows if rows and all(r["number"] for r in rows) else None

    rows = _wait_until(deployment, "acme's invoice to be issued", acme_issued, timeout=60)
    closed_at = time.monotonic()

    # 28 days x 24 calls = 672 calls: 672 x 1,000,000 = 672M input, 672 x 250,000 = 168M output.
    # acme pays alpha list price: 672 x 0.30 = 201.60 + 168 x 1.10 = 184.80 -> 386.40;
    # tax 6% = 23.184 -> 23.18; total 409.58, due 15 days after the month's last day.
    assert len(rows) == 1
    acme = rows[0]
    assert acme["period"] == f"{month:%Y-%m}" and acme["status"] == "issued"
    assert (_money(acme["subtotal"]), _money(acme["tax"]), _money(acme["total"])) == (
        (Decimal("386.40"), "USD"),
        (Decimal("23.18"), "USD"),
        (Decimal("409.58"), "USD"),
    )
    assert date.fromisoformat(acme["due_date"]) == period_end + timedelta(days=15)

    status, detail = deployment.request("GET", f"/api/v1/invoices/{acme['number']}", key=keys["acme"])
    assert status == 200
    assert [
        (ln["model"], ln["class"], ln["tokens"], Decimal(ln["unit_price"]), _money(ln["amount"]))
        for ln in detail["lines"]
    ] == [
        ("minimax-m2.5", "input", 672_000_000, Decimal("0.30"), (Decimal("201.60"), "USD")),
        ("minimax-m2.5", "output", 168_000_000, Decimal("1.10"), (Decimal("184.80"), "USD")),
    ]

    # alpha pays the platform list - 10%: 672 x 0.27 = 181.44 + 168 x 0.99 = 166.32 -> 347.76, no tax.
    def alpha_issued() -> Any:
        status, invoices = deployment.request("GET", "/api/v1/invoices", key=keys["alpha"])
        return invoices if status == 200 and invoices and all(i["number"] for i in invoices) else None

    (alpha,) = _wait_until(deployment, "alpha's invoice to be issued", alpha_issued, timeout=30)
    assert (alpha["issuer"], alpha["period"], _money(alpha["total"])) == (
        "platform",
        f"{month:%Y-%m}",
        (Decimal("347.76"), "USD"),
    )
    # alpha's margin on acme: 386.40 - 347.76 = 38.64 (before tax, which alpha collects for the state).
    assert Decimal(acme["subtotal"]["amount"]) - Decimal(alpha["subtotal"]["amount"]) == Decimal("38.64")

    # A key sees nothing outside its subtree: acme's key cannot read its parent's invoice.
    status, _ = deployment.request("GET", f"/api/v1/invoices/{alpha['number']}", key=keys["acme"])
    assert status == 404

    deployment.alive()
    timings = {
        "ingest": round(ingested_at - started, 1),
        "close": round(closed_at - ingested_at, 1),
        "total": round(time.monotonic() - started, 1),
    }
    print(f"e2e timings (s): {timings}")
    assert timings["total"] < 90, timings
