"""A throwaway PostgreSQL database for one scenario run, copied from a migrated template.

Migrating from scratch costs seconds per run; copying a template costs a fraction of that. The
template is named after a hash of every migration file, so a new migration makes a new template
(the stale ones are dropped). Building it is guarded by a PostgreSQL advisory lock so that parallel
runs wait for one builder instead of racing; it is built under a temporary name and renamed when
complete, so a crash half-way never leaves a half-migrated template behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import psycopg
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from psycopg import sql
from psycopg.conninfo import make_conninfo

# pg_advisory_lock key for template building: any constant unlikely to collide with other users.
TEMPLATE_LOCK_KEY = 0x5CE4A210
TEMPLATE_PREFIX = "scenario_template_"


def _migrations_digest() -> str:
    digest = hashlib.sha256(django.get_version().encode())
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        folder = Path(config.path) / "migrations"
        for path in sorted(folder.glob("*.py")):
            digest.update(f"{config.label}/{path.name}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def template_name() -> str:
    return f"{TEMPLATE_PREFIX}{_migrations_digest()}"


def _settings() -> dict[str, Any]:
    return connections["default"].settings_dict


@contextlib.contextmanager
def _maintenance() -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the configured server, for CREATE/DROP DATABASE."""
    params = _settings()
    given = {"user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}
    kwargs: dict[str, str] = {key: str(params[name]) for key, name in given.items() if params.get(name)}
    try:
        conn = psycopg.connect(make_conninfo(dbname=params["NAME"], **kwargs), autocommit=True)
    except psycopg.OperationalError:
        conn = psycopg.connect(make_conninfo(dbname="postgres", **kwargs), autocommit=True)
    with conn:
        yield conn


def _point_default_at(name: str) -> None:
    """Close the default connection and aim it (and any thread's new one) at database `name`."""
    connection = connections["default"]
    connection.close()
    connection.settings_dict["NAME"] = name
    settings.DATABASES["default"]["NAME"] = name


def _template_ensure(conn: psycopg.Connection[Any], original: str) -> str:
    template = template_name()
    conn.execute("SELECT pg_advisory_lock(%s)", [TEMPLATE_LOCK_KEY])
    try:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone():
            return template
        building = f"{template}_building"
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
        _point_default_at(building)
        try:
            call_command("migrate", verbosity=0, interactive=False)
        finally:
            _point_default_at(original)
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(building), sql.Identifier(template)
            )
        )
        stale = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
            [TEMPLATE_PREFIX.replace("_", r"\_") + "%", template],
        ).fetchall()
        for (name,) in stale:
            # A stale template still being copied by an older run is left for the next build.
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        return template
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [TEMPLATE_LOCK_KEY])


def throwaway_name() -> str:
    return f"scenario_{os.getpid()}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """Run the block with the default connection on a fresh copy of the migrated template; the copy
    is dropped afterwards, also when the block raises (or the process gets SIGTERM, see the command)."""
    original = _settings()["NAME"]
    name = throwaway_name()
    with _maintenance() as conn:
        template = _template_ensure(conn, original)
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    try:
        _point_default_at(name)
        yield name
    finally:
        _point_default_at(original)
        with _maintenance() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
