"""Risk: provision matrix, exposure snapshots, write-offs (reserved slot: operations are filled in by the work that owns it)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("settlement", "0003_billing")]

    operations: list[migrations.operations.base.Operation] = []
