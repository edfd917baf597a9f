"""Dunning levels and steps (reserved slot: operations are filled in by the work that owns it)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("settlement", "0004_risk")]

    operations: list[migrations.operations.base.Operation] = []
