"""What a reseller may grant the children it opens or changes over the API (§4, decided here).

The services in accounts.services keep the tree consistent whoever calls them (staff included);
these rules add what a reseller's own authority allows, and run inside the services' transaction
with the parent row locked, so two parallel grants cannot both spend the same available credit:

- A prepaid parent opens only prepaid children: it has no credit of its own to extend.
- A postpaid child's billing period is no longer than its parent's (a monthly parent cannot give
  quarterly terms) and its net days are no longer than the parent's: the parent must not pay its
  own invoice before its child pays.
- A child's credit limit is not above the parent's own available credit (credit control, §6) at the
  time of the grant; lowering a limit is always allowed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from accounts.models import Account, Terms
from accounts.services import account_create, account_update
from distributor.errors import ValidationFailed
from distributor.money import normalize

PERIOD_MONTHS = {Terms.MONTHLY: 1, Terms.QUARTERLY: 3}


def _parent_available(parent: Account) -> Decimal:
    from settlement.services.credit_control import credit_states_compute

    return credit_states_compute(account_ids=[parent.pk])[parent.pk].available


def _grant_check(
    *, parent: Account, terms: str, net_days: int, credit_limit: Decimal | None, raising: bool
) -> None:
    if parent.terms == Terms.PREPAID and terms != Terms.PREPAID:
        raise ValidationFailed(
            f"{parent.code!r} is prepaid: its children are prepaid too",
            details={"parent": parent.code, "parent_terms": parent.terms, "terms": terms},
        )
    if terms != Terms.PREPAID and parent.terms != Terms.PREPAID:
        if PERIOD_MONTHS[Terms(terms)] > PERIOD_MONTHS[Terms(parent.terms)]:
            raise ValidationFailed(
                f"{parent.code!r} is billed {parent.terms}: a child cannot get longer ({terms}) terms",
                details={"parent_terms": parent.terms, "terms": terms},
            )
        if net_days > parent.net_days:
            raise ValidationFailed(
                f"net days cannot exceed the parent's own ({parent.net_days})",
                details={"parent_net_days": parent.net_days, "net_days": net_days},
            )
    if credit_limit is not None and raising:
        available = _parent_available(parent)
        if credit_limit > available:
            raise ValidationFailed(
                f"a credit limit of {normalize(credit_limit)} is above {parent.code!r}'s own available credit "
                f"({normalize(available)})",
                details={"credit_limit": normalize(credit_limit), "parent_available": normalize(available)},
            )


def child_account_open(*, parent: Account, actor: Any = None, **fields: Any) -> Account:
    """Open a child under `parent` within what `parent` may grant. Net days default to the
    parent's; the currency is the parent's."""
    with transaction.atomic():
        locked = Account.objects.select_for_update(of=("self",)).select_related("book").get(pk=parent.pk)
        fields.setdefault("net_days", locked.net_days)
        _grant_check(
            parent=locked,
            terms=fields["terms"],
            net_days=fields["net_days"],
            credit_limit=fields.get("credit_limit"),
            raising=True,
        )
        root_book = (
            locked.book if not locked.ancestor_ids else Account.objects.get(pk=locked.ancestor_ids[0]).book
        )
        return account_create(
            root_book=root_book, parent=locked, currency=locked.currency, actor=actor, **fields
        )


def child_account_change(*, account: Account, actor: Any = None, **changes: Any) -> Account:
    """Change a child's terms, limit, status, tax or commitment within what its parent may grant."""
    assert account.parent_id is not None
    with transaction.atomic():
        parent = Account.objects.select_for_update(of=("self",)).get(pk=account.parent_id)
        current = Account.objects.select_for_update(of=("self",)).get(pk=account.pk)
        terms = changes.get("terms", current.terms)
        net_days = changes.get("net_days", current.net_days)
        limit = changes.get("credit_limit", current.credit_limit)
        if terms == Terms.PREPAID and "credit_limit" not in changes:
            limit = None  # moving to prepaid clears the limit (a prepaid account spends its wallet)
            changes["credit_limit"] = None
        raising = limit is not None and (current.credit_limit is None or limit > current.credit_limit)
        _grant_check(parent=parent, terms=terms, net_days=net_days, credit_limit=limit, raising=raising)
        return account_update(account=current, actor=actor, **changes)


def child_account_close(*, account: Account, actor: Any = None) -> Account:
    """Close a child: its keys stop working and it takes no new usage. Its children must be
    closed first; what it owes stays owed (its open invoices are still collected)."""
    from accounts.models import Status

    with transaction.atomic():
        current = Account.objects.select_for_update(of=("self",)).get(pk=account.pk)
        if current.status == Status.CLOSED:
            return current
        open_children = list(
            current.children.exclude(status=Status.CLOSED)
            .order_by("code")
            .values_list("code", flat=True)[:10]
        )
        if open_children:
            from distributor.errors import Conflict

            raise Conflict(
                f"{current.code!r} has open children: close them first",
                details={"account": current.code, "open_children": open_children},
            )
        return account_update(account=current, actor=actor, status=Status.CLOSED)
