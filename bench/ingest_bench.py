"""Ingestion throughput (issue 4): the real HTTP path against the raw COPY ceiling, in one run.

    make bench-ingest      (or: .venv/bin/python bench/ingest_bench.py [--batches 30] [--clients 4]
                            [--workers 5] [--threads 4] [--profile stacks.txt])

It creates its own database `bench_ingest_<pid>` on the server of DATABASE_URL (or the embedded
server), migrates it, seeds the tree of bench/usage_world.py (a reseller with customers: two hops
rated; prepaid customers: drawdown; a provider with prepaid quota: upstream draw), and makes
`--batches` x 10,000 gateway events. Then, on the same machine and in the same minutes:

(a) the ceiling: the same events (already resolved to ids and typed: no JSON, no validation) COPYed
    in binary, 10,000 rows per transaction over one connection, into a fresh table with the event
    table's columns and checks and a unique index on (account_id, request_id). Timed before and
    after (b) and (c); the mean is the baseline, the spread is the machine's noise.
(b) the real path: the events as JSON batches of 10,000 POSTed to /api/v1/usage/batches, served by
    gunicorn (as deploy/gunicorn.conf.py runs it on 2 cores: 5 gthread workers x 4 threads;
    persistent database connections), from `--clients` concurrent client
    threads with the service key: validation, exactly-once keys, event table, rollups, cascade
    rating, upstream draw, prepaid drawdown and the credit cache refresh, all of it.
(c) replays: every batch of (b) posted again through the same path; all must come back duplicates.
After (b) and (c) it prints the CPU a batch cost in the gunicorn workers and in PostgreSQL, and the
cores' idle time over the phase (CpuAccount, from /proc).

Afterwards it checks the landing: every event once, rollup tokens equal the events' tokens at each
hop, the prepaid wallets drawn. The database is dropped at the end.

The last line is the figure: `RESULT ingest_http <b> events/s ratio=<b/a>`; the target is
ratio >= 0.35, and (c) at least as fast as (b).
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import usage_world
from usage_world import BATCH, Gateway, Server, log

TARGET_RATIO = 0.35
# The event table's columns, in order, for binary COPY.
CEILING_TYPES = [
    *("int8", "varchar", "int8", "varchar", "int8", "int8", "int8", "int8"),
    *("timestamptz", "timestamptz", "int8", "jsonb"),
]


def ceiling_rows(
    world: usage_world.World, batches: list[list[dict[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The events as the event table holds them, built before the timing (the ceiling measures
    COPY and the index, not Python)."""
    from psycopg.types.json import Jsonb

    from procurement.models import ProviderModel

    model_ids = dict(ProviderModel.objects.values_list("code", "pk"))
    received = datetime.now(UTC)
    out: list[list[tuple[Any, ...]]] = []
    for n, events in enumerate(batches):
        rows: list[tuple[Any, ...]] = []
        for e in events:
            tags = e.get("tags")
            rows.append(
                (
                    world.account_ids[e["account"]],
                    e["request_id"],
                    model_ids[e["model"]],
                    e["model"],
                    e["input_tokens"],
                    e["cached_input_tokens"],
                    0,
                    e["output_tokens"],
                    datetime.fromisoformat(e["occurred_at"]),
                    received,
                    n + 1,
                    None if tags is None else Jsonb(tags),
                )
            )
        out.append(rows)
    return out


def ceiling_run(database_url: str, rows: list[list[tuple[Any, ...]]], table: str) -> float:
    """(a): events/s of binary COPY into a fresh copy of the event table with the unique index."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        conn.execute(
            f"CREATE TABLE {table} (LIKE settlement_usageevent INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"  # type: ignore[arg-type]
        )
        conn.execute(f"CREATE UNIQUE INDEX {table}_request ON {table} (account_id, request_id)")  # type: ignore[arg-type]
        conn.commit()
        started = time.perf_counter()
        for batch in rows:
            with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:  # type: ignore[arg-type]
                copy.set_types(CEILING_TYPES)
                for row in batch:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute(f"DROP TABLE {table}")  # type: ignore[arg-type]
        conn.commit()
    return sum(len(b) for b in rows) / elapsed


def http_run(
    port: int, secret: str, bodies: list[bytes], clients: int
) -> tuple[float, Counter[str], list[float]]:
    """POST every body once from `clients` threads; (events/s, summed counts, per-batch seconds)."""
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    totals: Counter[str] = Counter()
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        gateway = Gateway(port, secret)
        try:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                t0 = time.perf_counter()
                answer = gateway.post_batch(body)
                took = time.perf_counter() - t0
                with lock:
                    latencies.append(took)
                    for name in ("accepted", "duplicates", "rejected"):
                        totals[name] += answer[name]
        except BaseException as exc:
            errors.append(exc)
        finally:
            gateway.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return len(bodies) * BATCH / elapsed, totals, latencies


class CpuAccount:
    """CPU seconds of this machine's processes over a phase, from /proc: the gunicorn workers, the
    PostgreSQL processes (every local one; a backend that starts during the phase counts whole),
    everything else, and the cores' idle time. It tells a slow run whose batches cost more CPU from
    one whose cores stood idle."""

    def __init__(self, gunicorn_pids: list[int]) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._gunicorn = set(gunicorn_pids)
        self._started = self._read()

    def _read(self) -> tuple[dict[int, float], dict[int, float], float, float]:
        gunicorn: dict[int, float] = {}
        postgres: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            seconds = (int(fields[11]) + int(fields[12])) / self._tick
            if int(entry) in self._gunicorn:
                gunicorn[int(entry)] = seconds
            elif name == "postgres":
                postgres[int(entry)] = seconds
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: idle and iowait are the cores' idle time.
        return gunicorn, postgres, sum(cpu[:8]) / self._tick, (cpu[3] + cpu[4]) / self._tick

    def summary(self, batches: int) -> str:
        gunicorn0, postgres0, total0, idle0 = self._started
        gunicorn1, postgres1, total1, idle1 = self._read()

        def spent(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())

        web, database = spent(gunicorn0, gunicorn1), spent(postgres0, postgres1)
        total, idle = total1 - total0, idle1 - idle0
        other = max(total - idle - web - database, 0.0)
        per = 1000 / batches
        return (
            f"CPU a batch: gunicorn {web * per:.0f} ms, PostgreSQL {database * per:.0f} ms, "
            f"other {other * per:.0f} ms; cores idle {100 * idle / total if total else 0:.0f}% of the phase"
        )


def landing_check(world: usage_world.World, events: int) -> dict[str, Any]:
    """Every event once; at each hop the rollups carry exactly the events' tokens; wallets drawn."""
    from django.db import connection

    from settlement.services.credit_control import credit_states_compute

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), sum(input_tokens + cached_input_tokens + output_tokens) FROM settlement_usageevent"
        )
        count, tokens = cur.fetchone()
        cur.execute("SELECT count(*) FROM settlement_usagekey")
        (keys,) = cur.fetchone()
        # Leaf hop: every event's payer is its own account; the reseller pays for its subtree.
        cur.execute(
            "SELECT sum(tokens) FROM settlement_usagerollup WHERE payer_account_id = ANY(%s)",
            [[world.account_ids[c] for c in (*world.leaf_codes, *world.prepaid_codes)]],
        )
        (leaf_tokens,) = cur.fetchone()
        cur.execute(
            """
            SELECT COALESCE(sum(e.input_tokens + e.cached_input_tokens + e.output_tokens), 0)
            FROM settlement_usageevent e JOIN accounts_account a ON a.id = e.account_id
            WHERE a.parent_id = %s
            """,
            [world.account_ids[world.reseller_code]],
        )
        (under_reseller,) = cur.fetchone()
        cur.execute(
            "SELECT sum(tokens) FROM settlement_usagerollup WHERE payer_account_id = %s",
            [world.account_ids[world.reseller_code]],
        )
        (reseller_tokens,) = cur.fetchone()
        cur.execute(
            "SELECT sum(input_tokens + cached_input_tokens + output_tokens) FROM settlement_upstreamcostrollup"
        )
        (upstream_tokens,) = cur.fetchone()
        cur.execute(
            "SELECT count(*), count(DISTINCT source_id) FROM ledger_journalentry WHERE source_type = 'usage_batch'"
        )
        drawdown_entries, drawdown_batches = cur.fetchone()
        cur.execute("SELECT count(*), sum(accepted), sum(duplicates) FROM settlement_usagebatch")
        batch_rows, accepted, duplicates = cur.fetchone()
        cur.execute("SELECT count(*) FROM settlement_usagerollup")
        (rollup_rows,) = cur.fetchone()
    assert count == events == keys, (count, events, keys)
    assert leaf_tokens == tokens == upstream_tokens, (leaf_tokens, tokens, upstream_tokens)
    assert reseller_tokens == under_reseller, (reseller_tokens, under_reseller)
    wallets = credit_states_compute(account_ids=[world.account_ids[c] for c in world.prepaid_codes])
    # Drawn down; past zero once the run is large enough (the shortfall became a receivable).
    assert all(state.available < usage_world.PREPAID_TOPUP for state in wallets.values()), wallets
    return {
        "events": count,
        "rollup_rows": rollup_rows,
        "drawdown_entries": drawdown_entries,
        "drawdown_batches": drawdown_batches,
        "wallets_left": sorted(str(round(s.available, 2)) for s in wallets.values()),
        "batches": batch_rows,
        "accepted": accepted,
        "duplicates": duplicates,
    }


def profile_start(server: Server, path: str) -> subprocess.Popen[bytes]:
    """py-spy on gunicorn and its workers, collapsed stacks (one line per stack, with a count)."""
    return subprocess.Popen(
        [
            str(usage_world.BIN_DIR / "py-spy"),
            "record",
            "--pid",
            str(server.process.pid),
            "--subprocesses",
            "--rate",
            "50",
            "--format",
            "raw",
            "--output",
            path,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(path: str, top: int = 25) -> None:
    """Self time and inclusive time per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].rstrip(")") for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    log(f"profile: {total} samples in the workers")
    log("  inclusive:")
    for name, count in inclusive.most_common(top):
        log(f"    {100 * count / total:5.1f}%  {name}")
    log("  self:")
    for name, count in own.most_common(top):
        log(f"    {100 * count / total:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=30, help="batches of 10,000 events (default 30)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent gateway connections")
    parser.add_argument(
        "--workers", type=int, default=5, help="gunicorn workers (deploy's default on 2 cores)"
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per worker (gthread); 1 = sync workers"
    )
    parser.add_argument("--customers", type=int, default=400, help="customers under the reseller")
    parser.add_argument("--profile", metavar="PATH", help="py-spy the workers during (b) into PATH")
    args = parser.parse_args()

    run_started = time.perf_counter()
    log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    server_root, database_url = usage_world.database_create("bench_ingest")
    server: Server | None = None
    try:
        world = usage_world.world_seed(customers=args.customers, direct=40)
        batches = usage_world.batches_make(world, batches=args.batches)
        bodies = usage_world.bodies_of(batches)
        rows = ceiling_rows(world, batches)
        total = args.batches * BATCH
        log(
            f"seeded {len(world.callers)} calling accounts; {total:,} events in {args.batches} batches "
            f"({sum(len(b) for b in bodies) / len(bodies) / 1e6:.2f} MB of JSON each)"
        )
        psycopg_url = database_url
        ceiling_before = ceiling_run(psycopg_url, rows, "bench_ceiling_a")
        log(f"(a) COPY ceiling, before: {ceiling_before:,.0f} events/s")

        server = Server(
            database_url=database_url, workers=args.workers, threads=args.threads, secret=world.service_secret
        )
        profiler = profile_start(server, args.profile) if args.profile else None
        cpu = CpuAccount([server.process.pid, *server.pids()])
        rate, counts, latencies = http_run(server.port, world.service_secret, bodies, args.clients)
        cpu_fresh = cpu.summary(args.batches)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            profiler.wait()
        assert counts["accepted"] == total and counts["rejected"] == 0, counts
        log(
            f"(b) HTTP ingestion: {rate:,.0f} events/s ({args.clients} clients, {args.workers} workers x {args.threads} threads; "
            f"per batch p50 {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s)"
        )
        log(f"    {cpu_fresh}")
        cpu = CpuAccount([server.process.pid, *server.pids()])
        replay_rate, replay_counts, replay_latencies = http_run(
            server.port, world.service_secret, bodies, args.clients
        )
        cpu_replays = cpu.summary(args.batches)
        assert replay_counts["duplicates"] == total and replay_counts["accepted"] == 0, replay_counts
        log(
            f"(c) replays: {replay_rate:,.0f} events/s (per batch p50 {statistics.median(replay_latencies):.2f} s)"
        )
        log(f"    {cpu_replays}")
        ceiling_after = ceiling_run(psycopg_url, rows, "bench_ceiling_b")
        log(f"(a) COPY ceiling, after: {ceiling_after:,.0f} events/s")
        ceiling = (ceiling_before + ceiling_after) / 2
        spread = abs(ceiling_before - ceiling_after) / ceiling
        landed = landing_check(world, total)
        log(f"landing checked: {landed}")
        if args.profile:
            profile_summary(args.profile)
        log(
            f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"ceiling spread between its two runs {100 * spread:.0f}% (the machine's noise)"
        )
        ratio = rate / ceiling
        log(
            f"summary: ceiling {ceiling:,.0f} events/s, HTTP {rate:,.0f} events/s, ratio {ratio:.2f} "
            f"(target >= {TARGET_RATIO}), replays {replay_rate:,.0f} events/s "
            f"({replay_rate / rate:.2f}x fresh; must be >= 1); whole run {time.perf_counter() - run_started:.0f} s"
        )
        print(f"RESULT ingest_http {rate:.0f} events/s ratio={ratio:.2f}", flush=True)
    finally:
        if server is not None:
            server.stop()
        usage_world.database_drop(server_root, database_url)


if __name__ == "__main__":
    main()
