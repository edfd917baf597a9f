"""Cheaper writes on the ingestion path (docs/benchmarks.md, issue 4).

- request ids compare bytewise (COLLATE "C") in the key and event tables: the unique index on
  (account, request_id) compares them on every insert, and the database's libc collation made each
  comparison a strcoll() call;
- the rollup tables are updated by every batch (the same few thousand rows each time): pages kept
  half empty let PostgreSQL write the new row version on the same page without touching the indexes
  (HOT updates), since no indexed column changes;
- the rollups' index on payee_book alone goes: (payee_book, day) leads with it;
- the key no longer stores a content hash: a replayed key is compared with the event it landed.
"""

import django.db.models.deletion
from django.db import migrations, models

HOT_TABLES = ("settlement_usagerollup", "settlement_usageaccrual", "settlement_upstreamcostrollup")


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0003_exchange_rates"),
        ("settlement", "0007_invoice_usage"),
    ]

    operations = [
        migrations.RemoveField(model_name="usagekey", name="content_hash"),
        migrations.AlterField(
            model_name="usagekey",
            name="request_id",
            field=models.CharField(db_collation="C", max_length=200),
        ),
        # The event table is created by raw SQL (0002), so its column is altered the same way.
        migrations.RunSQL(
            'ALTER TABLE settlement_usageevent ALTER COLUMN request_id TYPE varchar(200) COLLATE "C"',
            "ALTER TABLE settlement_usageevent ALTER COLUMN request_id TYPE varchar(200)",
            state_operations=[
                migrations.AlterField(
                    model_name="usageevent",
                    name="request_id",
                    field=models.CharField(db_collation="C", max_length=200),
                ),
            ],
        ),
        migrations.AlterField(
            model_name="usagerollup",
            name="payee_book",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_rollups",
                to="ledger.book",
            ),
        ),
        migrations.RunSQL(
            [f"ALTER TABLE {table} SET (fillfactor = 50)" for table in HOT_TABLES],
            [f"ALTER TABLE {table} RESET (fillfactor)" for table in HOT_TABLES],
        ),
    ]
