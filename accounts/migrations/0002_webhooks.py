"""Reseller webhooks and deliveries (reserved slot: operations are filled in by the work that owns it)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations: list[migrations.operations.base.Operation] = []
