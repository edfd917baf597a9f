from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _roles_sync_after_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """After every migrate: make sure every model's permissions exist, then bring the finance roles
    up to date, so the permissions of models added since the roles' migration join them."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    from accounts.roles import roles_sync

    # post_migrate reaches the apps one by one and accounts is not the last: create the others'
    # permissions now (idempotent) rather than sync against a half-filled table.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    roles_sync(using=using)


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_roles_sync_after_migrate, sender=self, dispatch_uid="accounts.roles_sync")
