"""Monthly partitions of the raw usage event table (§5).

A partition covers one calendar month in UTC. The beat job creates them a few months ahead; ingestion
creates a missing one on demand (a late or back-filled month) before it opens its own transaction,
because creating a partition locks the parent table and must not be held while events are merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db import DatabaseError, connection, transaction

PARENT_TABLE = "settlement_usageevent"


def partition_name(month: date) -> str:
    return f"{PARENT_TABLE}_y{month.year:04d}m{month.month:02d}"


def _next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def usage_partitions_ensure(*, months: Iterable[date]) -> list[str]:
    """Create the partitions of these months (any day of the month will do) that do not exist yet;
    returns the names created."""
    wanted = {date(m.year, m.month, 1) for m in months}
    if not wanted:
        return []
    names = {partition_name(m): m for m in wanted}
    created: list[str] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'", [list(names)]
        )
        existing = {row[0] for row in cursor.fetchall()}
        for name, month in sorted(names.items()):
            if name in existing:
                continue
            try:
                # Two ingesting connections may race to create the same month: the loser's
                # savepoint rolls back and the partition the winner made serves both.
                with transaction.atomic():
                    # Names and bounds are built from dates, never from client text.
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT_TABLE} "
                        f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') "
                        f"TO ('{_next_month(month).isoformat()} 00:00:00+00')"
                    )
            except DatabaseError:
                cursor.execute("SELECT 1 FROM pg_class WHERE relname = %s", [name])
                if cursor.fetchone() is None:
                    raise
                continue
            created.append(name)
    return created


def usage_partitions_ahead(*, today: date, months_ahead: int = 3) -> list[str]:
    """The beat job's work: this month and the next `months_ahead` months."""
    month = date(today.year, today.month, 1)
    months = [month]
    for _ in range(months_ahead):
        month = _next_month(month)
        months.append(month)
    return usage_partitions_ensure(months=months)
