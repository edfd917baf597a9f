"""The database server a benchmark runs against, and its own throwaway databases on it (shared by
the ledger, ingestion, authorization and close benchmarks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

REPO_DIR = Path(__file__).resolve().parent.parent


def server_url() -> str:
    """DATABASE_URL if set, else the embedded server the project's settings would start."""
    url = os.environ.get("DATABASE_URL", "")
    if url:
        return url
    sys.path.insert(0, str(REPO_DIR))
    from distributor.embedded_db import embedded_database_url

    return embedded_database_url()


def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def admin_execute(url: str, sql: str) -> None:
    """CREATE/DROP DATABASE cannot run in a transaction: an autocommit connection."""
    import psycopg

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]
