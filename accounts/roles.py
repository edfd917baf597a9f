"""Finance staff roles: the Django groups the admin's permissions hang on, defined here in code.

`finance_clerk` records payments, top-ups and manual charges and issues drafts; `finance_controller`
does all that and also writes off invoices, credits them, keeps the provision matrix, credit limits,
price lists and API keys; `auditor` sees everything and changes nothing. A staff user without a
role sees nothing in the admin.

The code is the source of truth: `roles_sync()` sets each group's permissions to exactly what is
written here (an extra permission granted by hand to a role group is taken away again; grant it
to the person instead). It runs in the data migration that creates the groups and after every
`migrate` (post_migrate, accounts/apps.py), so the permissions of models added later join the roles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db import DEFAULT_DB_ALIAS, transaction

FINANCE_APPS: tuple[str, ...] = ("ledger", "procurement", "accounts", "settlement")
# The auditor also reads who the staff are and the admin's own change log.
AUDIT_EXTRA_APPS: tuple[str, ...] = ("auth", "admin")

FINANCE_CLERK = "finance_clerk"
FINANCE_CONTROLLER = "finance_controller"
AUDITOR = "auditor"


@dataclass(frozen=True)
class Role:
    """A group: `view_*` of every model in `view_apps`, plus the named "app_label.codename"s."""

    name: str
    view_apps: tuple[str, ...]
    grants: frozenset[str] = field(default_factory=frozenset)


CLERK_GRANTS = frozenset(
    {
        "settlement.add_payment",  # record a payment received
        "accounts.add_topup",  # a prepaid account's payment
        "settlement.add_manualcharge",  # an enterprise service charge on the next invoice
        "settlement.change_invoice",  # issue drafts (the changelist's "issue" action)
    }
)
CONTROLLER_GRANTS = CLERK_GRANTS | {
    "settlement.write_off_invoice",
    "settlement.add_creditnote",
    "settlement.add_provisionmatrix",  # a change of rates is a new matrix version
    "accounts.change_account",  # credit limits, terms, status
    "accounts.add_account",
    "accounts.add_pricelist",  # price lists are append-only versions
    "accounts.add_apikey",
    "accounts.change_apikey",  # revoking a key
}

ROLES: tuple[Role, ...] = (
    Role(FINANCE_CLERK, FINANCE_APPS, CLERK_GRANTS),
    Role(FINANCE_CONTROLLER, FINANCE_APPS, CONTROLLER_GRANTS),
    Role(AUDITOR, FINANCE_APPS + AUDIT_EXTRA_APPS),
)


def role_permission_ids(
    *, role: Role, registry: Apps = global_apps, using: str = DEFAULT_DB_ALIAS
) -> set[int]:
    """The ids of the permission rows that `role` holds, from the permissions that exist now."""
    permission_model = registry.get_model("auth", "Permission")
    rows: Iterable[tuple[int, str, str]] = (
        permission_model.objects.using(using)
        .filter(content_type__app_label__in=(*role.view_apps, *{g.split(".")[0] for g in role.grants}))
        .values_list("pk", "content_type__app_label", "codename")
    )
    return {
        pk
        for pk, app_label, codename in rows
        if (app_label in role.view_apps and codename.startswith("view_"))
        or f"{app_label}.{codename}" in role.grants
    }


def roles_sync(*, registry: Apps = global_apps, using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Create the role groups and set each one's permissions to exactly its definition.

    Idempotent: a second run changes nothing. `registry` is the migration's historical apps when
    called from a migration. Returns the number of permissions per role."""
    group_model = registry.get_model("auth", "Group")
    held: dict[str, int] = {}
    with transaction.atomic(using=using):
        for role in ROLES:
            group, _ = group_model.objects.using(using).get_or_create(name=role.name)
            wanted = role_permission_ids(role=role, registry=registry, using=using)
            current = set(group.permissions.values_list("pk", flat=True))
            if current != wanted:
                group.permissions.set(wanted)
            held[role.name] = len(wanted)
    return held
