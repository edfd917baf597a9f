"""gunicorn's configuration for deploy/bin/web. Every knob comes from the environment (listed in
deploy/env.example) so one image serves every size of deployment."""

from __future__ import annotations

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r} is not a whole number")
    return int(raw)


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers with a few threads: the work is database-bound, and a thread waiting on PostgreSQL
# frees the GIL. WEB_CONCURRENCY is the conventional name platforms set.
workers = _int("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8))
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread"
# A usage batch of 10,000 events takes about a second; a PDF a little less. 60 s is generous.
timeout = _int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5
# Recycle workers now and then (with jitter, so they do not all restart together).
max_requests = _int("GUNICORN_MAX_REQUESTS", 5000)
max_requests_jitter = max_requests // 10
# Access log to stdout, errors to stderr: the process manager collects both.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "warning").lower()
# The load balancer in front sets X-Forwarded-*; trust it only from the addresses named here.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Load the app before forking: workers share its memory and a broken settings module fails once, loudly.
preload_app = True
