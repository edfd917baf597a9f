"""Rollup pages kept four-fifths empty (docs/benchmarks.md, fifth round; issue 4).

Every usage batch updates the same few thousand rollup and accrual rows. A row's old version can
only be pruned once no transaction that started before its update is still running, and up to
three batches are in flight at once (settings.USAGE_INGEST_CONCURRENCY), so a page must hold
several versions of each of its rows for the update to stay on the page (HOT: no index touched).
Measured with four gateway threads and three slots: at fillfactor 50 about 40% of the updates left
their page and wrote every rollup index; at 20, 1-2% did, and PostgreSQL spent ~75 ms less CPU a
batch (260 against 186 ms). The price is space: the rollup tables take up to five times the pages
of packed ones (rows of past days are never updated again, yet keep their room). Only pages
written from now on are affected; `VACUUM FULL` repacks older ones.
"""

from django.db import migrations

HOT_TABLES = ("settlement_usagerollup", "settlement_usageaccrual", "settlement_upstreamcostrollup")


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0012_usage_event_batch_index"),
    ]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {table} SET (fillfactor = 20)" for table in HOT_TABLES],
            [f"ALTER TABLE {table} SET (fillfactor = 50)" for table in HOT_TABLES],
        ),
    ]
