"""`make fuzz`: schemathesis against the live OpenAPI schema (issue 7).

Creates a throwaway database next to DATABASE_URL's, migrates and seeds it (tests/fuzz/seed.py),
starts gunicorn on a free port, runs `schemathesis run` with the checks not_a_server_error and
response_schema_conformance as beta's key, then the hand-made hostile input of tests/fuzz/nasty.py
(NUL characters, unpaired surrogates, deep nesting, ... in every parameter and field), counts the
requests the server answered from its access log, then stops the server and drops the database.
Exits non-zero on any failure, any 5xx in the log, a dropped connection, or fewer than
FUZZ_MIN_REQUESTS requests.

The server runs without REDIS_URL: an in-process cache and eager Celery, so the run needs nothing
but PostgreSQL and touches no shared Redis database.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
MIN_REQUESTS = int(os.environ.get("FUZZ_MIN_REQUESTS", "2000"))
# Examples per operation and phase: 32 operations x (coverage + fuzzing + stateful) at 25 gives
# ~3,000 requests in about two minutes on 2 cores (20 gave 2,537 in 115 s).
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = os.environ.get("FUZZ_SEED", "20261129")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_url(url: str) -> str:
    return urlparse(url)._replace(path="/postgres").geturl()


def by_status_2xx(by_status: Counter[str]) -> int:
    return sum(n for code, n in by_status.items() if code.startswith("2"))


def main() -> int:
    base = os.environ.get("DATABASE_URL")
    if not base:
        print(
            "make fuzz needs DATABASE_URL (a PostgreSQL server it may create a database on)", file=sys.stderr
        )
        return 2
    name = f"fuzz_{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CACHE_REDIS_URL")}
    env.update(
        DATABASE_URL=urlparse(base)._replace(path=f"/{name}").geturl(),
        API_KEY_RATE="1000000/min",
        # Generated webhook URLs are accepted without DNS lookups; nothing is delivered meanwhile.
        WEBHOOK_ALLOW_PRIVATE_HOSTS="1",
        DJANGO_SETTINGS_MODULE="distributor.settings",
        PYTHONPATH=str(ROOT),
    )
    with psycopg.connect(admin_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server: subprocess.Popen[bytes] | None = None
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    access_log = workdir / "access.log"
    try:
        subprocess.run([BIN / "python", "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [BIN / "python", "tests/fuzz/seed.py"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        secret = seeded.stdout.strip().splitlines()[-1]
        schema = workdir / "schema.yaml"
        subprocess.run(
            [BIN / "python", "manage.py", "spectacular", "--file", schema], cwd=ROOT, env=env, check=True
        )
        port = free_port()
        server = subprocess.Popen(
            [
                BIN / "gunicorn",
                "distributor.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "3",
                "--access-logfile",
                access_log,
                "--access-logformat",
                "%(s)s %(m)s %(U)s",  # status first: paths may hold spaces
            ],
            cwd=ROOT,
            env=env,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.2)
        started = time.monotonic()
        result = subprocess.run(
            [
                BIN / "schemathesis",
                "run",
                str(schema),
                "--url",
                f"http://127.0.0.1:{port}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--header",
                f"Authorization: Bearer {secret}",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                SEED,
                "--workers",
                "2",
                "--suppress-health-check",
                "all",
                "--request-timeout",
                "30",
                "--warnings",
                "off",
            ],
            cwd=ROOT,
            env=env,
        )
        elapsed = time.monotonic() - started
        sys.path.insert(0, str(ROOT))  # run as a script: tests/ is not on the path
        from tests.fuzz.nasty import nasty_run

        # A key of its own: schemathesis's stateful phase may have revoked the seeded one.
        fresh = subprocess.run(
            [BIN / "python", "tests/fuzz/seed.py", "--fresh-key"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        nasty = nasty_run(schema_path=schema, port=port, secret=fresh.stdout.strip().splitlines()[-1])
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        with psycopg.connect(admin_url(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    lines = access_log.read_text(errors="replace").splitlines() if access_log.exists() else []
    shutil.rmtree(workdir, ignore_errors=True)
    api_lines = [line for line in lines if " /api/v1/" in line]
    server_errors = [line for line in api_lines if re.match(r"5\d\d ", line)]
    by_status = Counter(line.split(" ", 1)[0] for line in api_lines)
    by_operation = Counter(
        (
            line.split(" ")[1],
            re.sub(r"/api/v1/accounts/[^/]+", "/api/v1/accounts/{code}", line.split(" ", 2)[2]),
        )
        for line in api_lines
        if line.startswith("2")
    )
    print(
        f"fuzz: {len(api_lines)} API requests in {elapsed:.0f} s, {len(server_errors)} answered 5xx, "
        f"schemathesis exit {result.returncode}"
    )
    print("fuzz: by status:", ", ".join(f"{code} x{n}" for code, n in sorted(by_status.items())))
    print(
        f"fuzz: {sum(by_operation.values())} requests answered 2xx over {len(by_operation)} method+path shapes"
    )
    print(
        f"fuzz: {sum(nasty.values())} hand-made hostile requests (tests/fuzz/nasty.py):",
        ", ".join(f"{code or 'dropped'} x{n}" for code, n in sorted(nasty.items())),
    )
    for line in server_errors[:20]:
        print("  5xx:", line)
    if result.returncode != 0 or server_errors or nasty[0]:
        return 1
    if by_status_2xx(by_status) < len(api_lines) // 10:
        print("fuzz: under 10% of requests succeeded: is the seeded key accepted?", file=sys.stderr)
        return 1
    if len(api_lines) < MIN_REQUESTS:
        print(f"fuzz: fewer than {MIN_REQUESTS} requests; raise FUZZ_MAX_EXAMPLES", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
