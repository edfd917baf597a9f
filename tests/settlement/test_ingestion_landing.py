"""How a batch lands (§5, issue 4): new events are COPYed straight into the key and event tables
(settlement.services.ingestion); a key that exists already sends the batch through staging instead,
found either by a probe of a few of its keys or by the key index refusing the COPY. These tests hold
both ways to one promise: a key the probe misses still makes a duplicate or a conflict, never a
second event; a process SIGKILLed after its batch was landed and rated, but before the commit,
leaves nothing behind and its replay lands the batch whole; two batches sharing keys in opposite
orders count each event once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from ledger.models import JournalEntry
from procurement.models import UpstreamCharge
from settlement.models import UsageBatch, UsageEvent, UsageKey, UsageRollup
from settlement.services import usage_ingest
from tests.distributor.test_celery_worker import _test_database_url
from tests.settlement.test_ingestion import (
    RECEIVED,
    UsageEventFactory,
    ingest_concurrently,
    truncate_events,
    world_build,
)

ROOT = Path(__file__).resolve().parents[2]

# The child ingests the events on stdin and stops after rating, inside the batch's transaction,
# until it is killed: the keys, events, rollups, upstream draw and wallet entries are all written
# and none committed.
CHILD = """
import json, os, sys, time
from datetime import datetime
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "distributor.settings")
django.setup()
from settlement.services import rating
from settlement.services.ingestion import usage_ingest

rate = rating.usage_rate

def rate_then_wait(**kwargs):
    outcome = rate(**kwargs)
    print("rated", flush=True)
    time.sleep(120)
    return outcome

rating.usage_rate = rate_then_wait
usage_ingest(events=json.load(sys.stdin), service=True, received_at=datetime.fromisoformat(sys.argv[1]))
print("committed", flush=True)
"""


@pytest.mark.django_db
def test_a_landed_key_the_probe_misses_is_still_a_duplicate_or_a_conflict() -> None:
    world = world_build()
    usage_ingest(
        events=[
            UsageEventFactory(request_id="x-03", input_tokens=1_000_000),
            UsageEventFactory(request_id="x-08", input_tokens=5),
        ],
        service=True,
        received_at=RECEIVED,
    )
    # Twelve keys: the probe looks at x-00, x-06 and x-11, all new, so the COPY is tried and the key
    # index refuses it at x-03; staging then finds x-03 the same (a duplicate) and x-08 different (a
    # conflict).
    batch = [UsageEventFactory(request_id=f"x-{i:02d}", input_tokens=1_000_000) for i in range(12)]
    result = usage_ingest(events=batch, service=True, received_at=RECEIVED)
    assert (result.accepted, result.duplicates, result.rejected) == (10, 1, 1)
    assert [(r["index"], r["request_id"], r["code"]) for r in result.rejections] == [(8, "x-08", "conflict")]
    assert UsageKey.objects.count() == 12
    assert UsageEvent.objects.count() == 12
    # acme's input: x-03 once and the ten new ones, 11 x 1,000,000 tokens, plus x-08's 5 tokens
    # from the first batch: 11,000,005 tokens at 0.30 per 1M = 3.3000015.
    line = UsageRollup.objects.get(payer_account_id=world.acme.pk, token_class="input")
    assert (line.tokens, line.amount) == (11_000_005, Decimal("3.3000015"))


@pytest.mark.django_db(transaction=True)
def test_a_batch_killed_after_rating_leaves_nothing_and_its_replay_lands_whole() -> None:
    world = world_build()
    # 300 acme calls (postpaid, two hops above it) and 100 of devsolo's (prepaid: a drawdown).
    events = [UsageEventFactory(request_id=f"k-{i}", input_tokens=1_000_000) for i in range(300)]
    events += [UsageEventFactory(request_id=f"d-{i}", account="devsolo", model="glm-5") for i in range(100)]
    entries_before = JournalEntry.objects.count()
    charges_before = UpstreamCharge.objects.count()
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "REDIS_URL": settings.REDIS_URL or ""}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, RECEIVED.isoformat()],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(events).encode())
        child.stdin.close()
        line = child.stdout.readline()
        assert line == b"rated\n", (line, child.stderr.read() if child.stderr else b"")
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)

        # The killed connection's transaction is rolled back whole (the replay below also waits for
        # that: it queues on the keys the dead backend held until PostgreSQL notices).
        result = usage_ingest(events=events, service=True, received_at=RECEIVED)
        assert (result.accepted, result.duplicates, result.rejected) == (400, 0, 0)
        assert UsageBatch.objects.count() == 1
        assert UsageKey.objects.count() == 400
        assert UsageEvent.objects.count() == 400
        # acme's input line: 300 x 1,000,000 tokens at 0.30 per 1M = 90.00, once.
        line_row = UsageRollup.objects.get(payer_account_id=world.acme.pk, token_class="input")
        assert (line_row.tokens, line_row.amount) == (300_000_000, Decimal("90"))
        # One batch's entries and draws only, what the killed one wrote is gone: the upstream draw
        # of each provider's model and day (MiniMax, Zhipu), one entry per provider, and devsolo's
        # drawdown.
        assert UpstreamCharge.objects.count() - charges_before == 2
        assert JournalEntry.objects.count() - entries_before == 3
        assert JournalEntry.objects.filter(source_type="usage_batch").count() == 1

        again = usage_ingest(events=events, service=True, received_at=RECEIVED)
        assert (again.accepted, again.duplicates, again.rejected) == (0, 400, 0)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        truncate_events()


@pytest.mark.django_db(transaction=True)
def test_batches_sharing_keys_in_opposite_orders_count_each_event_once() -> None:
    world = world_build()
    shared = [UsageEventFactory(request_id=f"s-{i:03d}", input_tokens=1_000_000) for i in range(300)]
    batches = [
        shared + [UsageEventFactory(request_id=f"a-{i}", input_tokens=1_000_000) for i in range(50)],
        [UsageEventFactory(request_id=f"b-{i}", input_tokens=1_000_000) for i in range(50)] + shared[::-1],
    ]
    try:
        results = ingest_concurrently(batches)
        # 300 shared + 50 + 50 own: each lands once, the shared ones are the other batch's duplicates.
        assert sum(r.accepted for r in results) == 400
        assert sum(r.duplicates for r in results) == 300
        assert UsageKey.objects.count() == 400
        line = UsageRollup.objects.get(payer_account_id=world.acme.pk, token_class="input")
        # 400 x 1,000,000 tokens at 0.30 per 1M = 120.00.
        assert (line.tokens, line.amount) == (400_000_000, Decimal("120"))
    finally:
        truncate_events()
