"""The finance roles (accounts/roles.py) as Django groups: finance_clerk, finance_controller, auditor.

Permissions are normally created only after migrate (post_migrate), so this migration creates them
first for every app; accounts/apps.py runs the same sync after every later migrate."""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def roles_create(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    from accounts.roles import roles_sync

    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # create_permissions skips an app without a models module; historical app configs have none.
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
        app_config.models_module = None
    roles_sync(registry=apps, using=using)


def roles_drop(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    from accounts.roles import ROLES

    group_model = apps.get_model("auth", "Group")
    group_model.objects.using(schema_editor.connection.alias).filter(name__in=[r.name for r in ROLES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("accounts", "0002_webhooks"),
        ("ledger", "0003_exchange_rates"),
        ("procurement", "0002_upstream_statements"),
        ("settlement", "0005_dunning"),
    ]

    operations = [migrations.RunPython(roles_create, roles_drop)]
