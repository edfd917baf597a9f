"""The event table's one index is on batch_id (docs/benchmarks.md, fourth round; issue 4).

The (account_id, occurred_at) index took an insert at a scattered place for every landed event
(~13 ms of a 10,000-event batch in-process) and was read only to compare a replayed event with the
one its key landed. That comparison now finds the original through its key's batch
(settlement.services.ingestion): batch ids only grow, so the new index is written at its right-hand
edge, the cheap end of a B-tree. (A BRIN index was cheaper still to write, but ranges not yet
summarised are read whole, and right after a burst that was most of the month: replays fell to
~80,000 events/s.) Created on the partitioned table, the index cascades to every partition, present
and future.
"""

from django.db import migrations

FORWARD = [
    "DROP INDEX settlement_usageevent_account_at",
    "CREATE INDEX settlement_usageevent_batch ON settlement_usageevent (batch_id)",
]
BACKWARD = [
    "DROP INDEX settlement_usageevent_batch",
    "CREATE INDEX settlement_usageevent_account_at ON settlement_usageevent (account_id, occurred_at)",
]


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0011_invoice_line_wallet_shortfall"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
