"""What the ingestion and authorization benchmarks share: a throwaway database, a realistic account
tree seeded through the services, the gateway's synthetic traffic, gunicorn, and an HTTP client.

Nothing here runs at import time: the caller decides which database Django points at before
`django_setup` (the throwaway one), so that the bench never touches a real database.

The tree (one root book in USD, Europe/Berlin, so that rollup days are not UTC days):
- a provider with three models and list prices for input, cached input and output, and a prepaid
  quota purchase large enough for every run (the upstream draw runs on every batch);
- a reseller (distributor, postpaid, 10% discount on list) with `customers` postpaid customers
  (5% markup on the reseller's price): every event of theirs is rated at two hops;
- two prepaid customers of the reseller with small wallets (drawn down to and past zero during
  the run: the shortfall becomes a receivable) and a prepaid direct customer of the root;
- `direct` postpaid direct customers of the root (one hop).
Traffic is skewed like a real gateway's: a few customers make most calls (Zipf-like weights), and
calls are spread over the last two hours, so a 10,000-event batch touches a few hundred
(account, model, day) groups, not thousands.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from benchdb import admin_execute, server_url, with_database

REPO_DIR = Path(__file__).resolve().parent.parent
BIN_DIR = REPO_DIR / ".venv" / "bin"
BATCH = 10_000
MODELS = ("bench-glm", "bench-qwen", "bench-kimi")
# Each prepaid customer makes ~1% of the calls, ~0.01 USD each: 100,000 events exhaust the wallet.
PREPAID_TOPUP = Decimal("10.00")


def log(message: str) -> None:
    print(message, flush=True)


# --- the database server and the run's own database ----------------------------------------------


def database_create(prefix: str) -> tuple[str, str]:
    """A fresh database `<prefix>_<pid>` on the server; returns (server url, database url). Django
    is pointed at it (DATABASE_URL) and migrated."""
    server = server_url()
    name = f"{prefix}_{os.getpid()}"
    admin_execute(server, f"DROP DATABASE IF EXISTS {name}")
    admin_execute(server, f"CREATE DATABASE {name}")
    url = with_database(server, name)
    os.environ["DATABASE_URL"] = url
    django_setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return server, url


def database_drop(server: str, url: str) -> None:
    from django.db import connections

    connections.close_all()
    admin_execute(server, f"DROP DATABASE IF EXISTS {urlparse(url).path.lstrip('/')} WITH (FORCE)")


def django_setup() -> None:
    if not os.environ.get("REDIS_URL"):
        log(
            "note: REDIS_URL is unset, so each gunicorn worker has its own in-memory credit cache "
            "(authorizations recompute from the database): figures are not production-like"
        )
    sys.path.insert(0, str(REPO_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "distributor.settings")
    import django

    django.setup()


# --- the account tree -----------------------------------------------------------------------------


@dataclass
class World:
    service_secret: str
    # (code, weight) of every account the gateway reports for.
    callers: list[tuple[str, float]]
    prepaid_codes: list[str]
    leaf_codes: list[str]
    reseller_code: str
    started: datetime
    account_ids: dict[str, int] = field(default_factory=dict)


def world_seed(*, customers: int, direct: int, tag: str = "bench") -> World:
    """The tree of the module docstring, through the services (a few seconds)."""
    from accounts.models import Account
    from accounts.services import account_create, api_key_create, price_list_set, topup_record
    from ledger.services import book_create
    from procurement.services import (
        list_price_set,
        provider_create,
        provider_model_create,
        quota_purchase_record,
    )

    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    book = book_create(code=f"{tag}-root", name="Bench Root Ltd", currency="USD", timezone="Europe/Berlin")
    provider = provider_create(code=f"{tag}-provider", name="Bench provider", currency="USD")
    for i, code in enumerate(MODELS):
        model = provider_model_create(provider=provider, code=code)
        list_price_set(
            model=model,
            effective_from=start,
            prices={
                "input": Decimal("0.30") * (i + 1),
                "cached_input": Decimal("0.03") * (i + 1),
                "output": Decimal("1.10") * (i + 1),
            },
        )
    quota_purchase_record(
        book=book,
        provider=provider,
        paid=Decimal("900000"),
        credit=Decimal("1000000"),
        currency="USD",
        purchased_at=start,
        reference=f"{tag}-quota",
    )
    reseller = account_create(
        root_book=book,
        code=f"{tag}-reseller",
        name="Bench Reseller",
        kind="distributor",
        currency="USD",
        terms="monthly",
        credit_limit=Decimal("100000000"),
    )
    price_list_set(account=reseller, effective_from=start, rule="discount", rate=Decimal("0.1"))
    rng = random.Random(11)
    callers: list[tuple[str, float]] = []
    leaves: list[str] = []
    for i in range(customers):
        customer = account_create(
            root_book=book,
            code=f"{tag}-c{i:04d}",
            name=f"Customer {i}",
            parent=reseller,
            kind="customer",
            currency="USD",
            terms="monthly",
            credit_limit=Decimal("10000000"),
        )
        price_list_set(account=customer, effective_from=start, rule="markup", rate=Decimal("0.05"))
        callers.append((customer.code, 1.0 / (i + 1) ** 0.8))
        leaves.append(customer.code)
    prepaid: list[str] = []
    for i, parent in enumerate((reseller, reseller, None)):
        account = account_create(
            root_book=book,
            code=f"{tag}-prepaid{i}",
            name=f"Prepaid {i}",
            parent=parent,
            kind="customer",
            currency="USD",
            terms="prepaid",
        )
        price_list_set(account=account, effective_from=start, rule="markup", rate=Decimal("0.2"))
        # Small wallets: the run draws them to zero and past it (the shortfall is a receivable).
        topup_record(account=account, amount=PREPAID_TOPUP, at=start, reference=f"{tag}-topup-{i}")
        callers.append((account.code, 0.2))
        prepaid.append(account.code)
    for i in range(direct):
        account = account_create(
            root_book=book,
            code=f"{tag}-d{i:03d}",
            name=f"Direct {i}",
            kind="customer",
            currency="USD",
            terms="monthly",
            credit_limit=Decimal("10000000"),
        )
        price_list_set(account=account, effective_from=start, rule="markup", rate=Decimal("0.15"))
        callers.append((account.code, rng.uniform(0.01, 0.1)))
        leaves.append(account.code)
    _, secret = api_key_create(account=None, scopes=["usage"], name="bench gateway")
    ids = dict(Account.objects.filter(code__startswith=f"{tag}-").values_list("code", "pk"))
    return World(
        service_secret=secret,
        callers=callers,
        prepaid_codes=prepaid,
        leaf_codes=leaves,
        reseller_code=reseller.code,
        started=now,
        account_ids=ids,
    )


def batches_make(world: World, *, batches: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    """`batches` x 10,000 gateway events: random 128-bit request ids, skewed accounts, three models,
    calls spread over the two hours before the world was seeded, a third of them tagged."""
    rng = random.Random(seed)
    codes = [c for c, _ in world.callers]
    weights = [w for _, w in world.callers]
    base = world.started - timedelta(hours=2)
    out: list[list[dict[str, Any]]] = []
    for _ in range(batches):
        accounts = rng.choices(codes, weights=weights, k=BATCH)
        events: list[dict[str, Any]] = []
        for account in accounts:
            stamp = base + timedelta(milliseconds=rng.randrange(7_200_000))
            event: dict[str, Any] = {
                "request_id": f"{rng.getrandbits(128):032x}",
                "account": account,
                "model": MODELS[min(int(rng.expovariate(1.5)), 2)],
                "input_tokens": rng.randint(100, 20_000),
                "cached_input_tokens": rng.choice((0, 0, rng.randint(0, 5_000))),
                "output_tokens": rng.randint(10, 4_000),
                "occurred_at": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            if rng.random() < 0.33:
                event["tags"] = {"project": f"p{rng.randrange(20)}"}
            events.append(event)
        out.append(events)
    return out


# --- gunicorn and the gateway's HTTP client ---------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """gunicorn serving distributor.wsgi on the throwaway database with persistent database
    connections (DATABASE_CONN_MAX_AGE, as a deployment would set it)."""

    def __init__(self, *, database_url: str, workers: int, threads: int, secret: str) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url,
            DATABASE_CONN_MAX_AGE="600",
            DJANGO_DEBUG="false",
            CACHE_KEY_PREFIX=f"bench{os.getpid()}",
            LOG_LEVEL="WARNING",
        )
        self.process = subprocess.Popen(
            [
                str(BIN_DIR / "gunicorn"),
                "distributor.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--timeout",
                "300",
                # As deploy/gunicorn.conf.py runs it: threaded workers with keep-alive; threads=1
                # gives plain sync workers.
                *(
                    ("--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "5")
                    if threads > 1
                    else ()
                ),
                "--log-level",
                "warning",
                # Each worker imports the project itself, as a deployment would (no preload).
            ],
            cwd=REPO_DIR,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                Gateway(self.port, secret).post_batch(b'{"events": []}')
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        # Warm every worker: the first request of each imports views and opens its connection.
        for _ in range(workers * 3):
            Gateway(self.port, secret).post_batch(b'{"events": []}')

    def pids(self) -> list[int]:
        """The worker processes (for py-spy)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Gateway:
    """One keep-alive HTTP connection with the service key, as a gateway process holds."""

    def __init__(self, port: int, secret: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def post_batch(self, body: bytes) -> dict[str, Any]:
        self.conn.request("POST", "/api/v1/usage/batches", body=body, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"batch refused: {response.status} {data[:500]!r}")
        answer: dict[str, Any] = json.loads(data)
        return answer

    def authorize(self, code: str) -> tuple[int, bytes]:
        self.conn.request("GET", f"/api/v1/accounts/{code}/authorization", headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def bodies_of(batches: list[list[dict[str, Any]]]) -> list[bytes]:
    """Serialised once, before any timing: the client's JSON encoding is the gateway's cost."""
    return [json.dumps({"events": events}, separators=(",", ":")).encode() for events in batches]
