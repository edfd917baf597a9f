"""Authorization latency (issue 4): GET /api/v1/accounts/{code}/authorization while usage lands.

    make bench-authorize   (or: .venv/bin/python bench/authorize_bench.py [--seconds 20] [--clients 4]
                            [--workers 5] [--threads 4])

It creates its own database `bench_authorize_<pid>` on the server of DATABASE_URL (or the embedded
server), seeds the tree of bench/usage_world.py, lands two batches and asks once for every account
(the cache is warm, as in steady state), then serves the API with gunicorn and measures:

1. idle: `--clients` threads asking for accounts (skewed like the gateway's traffic: the busiest
   customers are asked most) for a few seconds with nothing else running: the same run's reference,
   so that the machine's load shows;
2. under ingestion: the same while a background gateway client posts fresh 10,000-event batches
   back to back (each refreshes the credit cache of the accounts it touched).

Each client, and the background gateway, is a process of its own, as gateways are: threads of one
Python process would share its GIL, and the time a client thread waits for it (while another
parses a response or the background one builds a batch) would be counted as server latency.

Every answer must be a 200 with `allowed` and `reason`. Request loops are bounded in time and count.
The last line is the figure: `RESULT authorize_p99 <ms> ms ratio=<10/p99>` (target p99 < 10 ms, so
ratio > 1), with p50 printed before it. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import usage_world
from usage_world import Gateway, Server, log

TARGET_MS = 10.0
# Bounds on the request loops (the bench must stop by itself whatever the machine does).
MAX_REQUESTS_PER_CLIENT = 200_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ask_loop(
    port: int, secret: str, codes: list[str], weights: list[float], seconds: float, seed: int
) -> list[float]:
    """One client: authorization requests back to back for `seconds`; latencies in ms."""
    rng = random.Random(seed)
    gateway = Gateway(port, secret)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS_PER_CLIENT:
            code = rng.choices(codes, weights=weights)[0]
            t0 = time.perf_counter()
            status, body = gateway.authorize(code)
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"authorization of {code} answered {status}: {body[:300]!r}")
            answer = json.loads(body)
            if "allowed" not in answer or "reason" not in answer:
                raise RuntimeError(f"authorization of {code} answered {answer}")
    finally:
        gateway.close()
    return latencies


def ingest_loop(port: int, secret: str, bodies: list[bytes], seconds: float) -> list[int]:
    """The background gateway client: fresh batches back to back for `seconds`; accepted counts."""
    gateway = Gateway(port, secret)
    accepted: list[int] = []
    deadline = time.perf_counter() + seconds
    try:
        for body in bodies:
            if time.perf_counter() >= deadline:
                break
            accepted.append(gateway.post_batch(body)["accepted"])
    finally:
        gateway.close()
    return accepted


def phase(
    pool: ProcessPoolExecutor,
    port: int,
    secret: str,
    codes: list[str],
    weights: list[float],
    clients: int,
    seconds: float,
) -> list[float]:
    """`clients` authorization clients, each in a process of its own (the module docstring says why);
    every latency, in ms."""
    futures = [pool.submit(ask_loop, port, secret, codes, weights, seconds, seed=i) for i in range(clients)]
    results = [f.result() for f in futures]
    # Per client: a client whose connection shares a worker process with the background gateway
    # shares that worker's GIL with a batch, which shows as one client with a worse tail.
    log(
        "  per client p50 / p99: "
        + ", ".join(f"{statistics.median(r):.2f} / {percentile(r, 0.99):.2f} ms" for r in results if r)
    )
    return [x for r in results for x in r]


def describe(name: str, latencies: list[float], seconds: float) -> str:
    return (
        f"{name}: {len(latencies):,} requests ({len(latencies) / seconds:,.0f}/s), "
        f"p50 {statistics.median(latencies):.2f} ms, p90 {percentile(latencies, 0.90):.2f} ms, "
        f"p99 {percentile(latencies, 0.99):.2f} ms, max {max(latencies):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of the measured phase under ingestion"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent authorization clients")
    parser.add_argument(
        "--workers", type=int, default=5, help="gunicorn workers (deploy's default on 2 cores)"
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per worker (gthread); 1 = sync workers"
    )
    parser.add_argument("--customers", type=int, default=400, help="customers under the reseller")
    args = parser.parse_args()

    log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    server_root, database_url = usage_world.database_create("bench_authorize")
    server: Server | None = None
    try:
        world = usage_world.world_seed(customers=args.customers, direct=40)
        # Enough fresh batches for the background client to post back to back through the phase.
        batches = usage_world.batches_make(world, batches=max(4, int(args.seconds) + 2), seed=3)
        bodies = usage_world.bodies_of(batches)
        codes = [c for c, _ in world.callers] + [world.reseller_code]
        weights = [w for _, w in world.callers] + [1.0]

        server = Server(
            database_url=database_url, workers=args.workers, threads=args.threads, secret=world.service_secret
        )
        warm = Gateway(server.port, world.service_secret)
        for body in bodies[:2]:
            warm.post_batch(body)
        for code in codes:
            status, _ = warm.authorize(code)
            assert status == 200, code
        warm.close()

        # Clients and the background gateway run in processes of their own (spawned, so that they
        # share nothing with this process's Django and database connections).
        pool = ProcessPoolExecutor(max_workers=args.clients + 1, mp_context=get_context("spawn"))
        for ready in [pool.submit(time.sleep, 0.5) for _ in range(args.clients + 1)]:
            ready.result()
        idle_seconds = min(5.0, args.seconds)
        idle = phase(pool, server.port, world.service_secret, codes, weights, args.clients, idle_seconds)
        log(describe("idle", idle, idle_seconds))

        background = pool.submit(
            ingest_loop, server.port, world.service_secret, bodies[2:], args.seconds + 0.5
        )
        time.sleep(0.5)  # the first batch is in flight
        started = time.perf_counter()
        loaded = phase(pool, server.port, world.service_secret, codes, weights, args.clients, args.seconds)
        elapsed = time.perf_counter() - started
        landed = background.result()
        pool.shutdown()
        accepted = sum(landed)
        log(describe("under ingestion", loaded, elapsed))
        log(f"background ingestion: {len(landed)} batches, {accepted:,} events landed during the phase")
        p50 = statistics.median(loaded)
        p99 = percentile(loaded, 0.99)
        log(
            f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"p99 under ingestion / idle p99 = {p99 / percentile(idle, 0.99):.1f}x"
        )
        print(f"p50 {p50:.2f} ms", flush=True)
        print(f"RESULT authorize_p99 {p99:.2f} ms ratio={TARGET_MS / p99:.2f}", flush=True)
    finally:
        if server is not None:
            server.stop()
        usage_world.database_drop(server_root, database_url)


if __name__ == "__main__":
    main()
