"""The account tree (§4): who may have children, which book bills whom, and the audit of changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from accounts.models import Account, AuditRecord
from accounts.selectors import account_children, account_subtree
from accounts.services import account_create, account_update
from distributor.errors import Conflict, ValidationFailed
from ledger.models import Book
from tests.accounts.factories import account, root_book

pytestmark = pytest.mark.django_db


def test_distributor_opens_its_own_book_with_its_first_child() -> None:
    root = root_book(timezone="Asia/Shanghai", grace_days=3)
    alpha = account(root, "alpha")
    assert alpha.book == root and alpha.own_book is None
    assert (alpha.ancestor_ids, alpha.depth) == ([], 0)

    beta = account(root, "beta", parent=alpha)
    alpha.refresh_from_db()
    own = alpha.own_book
    assert own is not None
    # Code and currency of the distributor; the root's zone and grace days (one close calendar).
    assert (own.code, own.currency, own.timezone, own.grace_days) == ("alpha", "USD", "Asia/Shanghai", 3)
    assert own.ledger_accounts.count() == 13  # the full chart
    assert beta.book == own
    assert (beta.ancestor_ids, beta.depth) == ([alpha.pk], 1)

    acme = account(root, "acme", parent=beta, kind="customer")
    gamma = account(root, "gamma", parent=alpha, kind="customer")
    beta.refresh_from_db()
    assert acme.book == beta.own_book and gamma.book == own
    assert (acme.ancestor_ids, acme.depth) == ([alpha.pk, beta.pk], 2)
    # root, alpha's and beta's books: a second child reuses the parent's book.
    assert Book.objects.count() == 3

    assert set(account_subtree(account=alpha).values_list("code", flat=True)) == {
        "alpha",
        "beta",
        "acme",
        "gamma",
    }
    assert set(account_subtree(account=beta).values_list("code", flat=True)) == {"beta", "acme"}
    assert list(account_subtree(account=acme).values_list("code", flat=True)) == ["acme"]
    assert list(account_children(account=alpha).values_list("code", flat=True)) == ["beta", "gamma"]
    assert list(account_children(account=None).values_list("code", flat=True)) == ["alpha"]


def test_tree_rules_are_refused_with_clear_messages() -> None:
    root = root_book()
    alpha = account(root, "alpha")
    acme = account(root, "acme", parent=alpha, kind="customer")
    with pytest.raises(ValidationFailed, match="a customer has no children"):
        account(root, "sub", parent=acme)
    with pytest.raises(ValidationFailed, match="parent's currency"):
        account(root, "euro", parent=alpha, currency="EUR")
    with pytest.raises(Conflict, match="already exists"):
        account(root, "acme")
    with pytest.raises(ValidationFailed, match="prepaid account has no credit limit"):
        account_create(
            root_book=root,
            code="pp",
            name="PP",
            kind="customer",
            currency="USD",
            terms="prepaid",
            credit_limit=Decimal("10"),
        )
    with pytest.raises(ValidationFailed, match="account code"):
        account(root, "Has Spaces")
    with pytest.raises(ValidationFailed, match="negative"):
        account(root, "neg", credit_limit=Decimal("-1"))
    with pytest.raises(ValidationFailed, match="between 0 and 1"):
        account(root, "tax", tax_rate=Decimal("1.5"))
    with pytest.raises(ValidationFailed, match="terms must be one of"):
        account(root, "weekly", terms="weekly")
    with pytest.raises(ValidationFailed, match="unknown currency"):
        account(root, "xxx", currency="XXX")
    other_root = root_book("other")
    with pytest.raises(ValidationFailed, match="does not belong to the tree"):
        account(other_root, "stray", parent=alpha)
    account_update(account=alpha, status="closed")
    with pytest.raises(ValidationFailed, match="closed"):
        account(root, "late", parent=alpha)
    # A distributor whose code is already a book's code cannot open its own book.
    platform_twin = account(other_root, "platform")
    with pytest.raises(Conflict, match="cannot open its own"):
        account(other_root, "child", parent=platform_twin)
    # Nothing refused left a row behind.
    assert set(Account.objects.values_list("code", flat=True)) == {"alpha", "acme", "platform"}


def test_account_update_is_audited_with_before_and_after() -> None:
    root = root_book()
    alpha = account(root, "alpha", credit_limit=Decimal("50000.00"))
    controller = get_user_model().objects.create_user(username="controller")
    account_update(account=alpha, actor=controller, credit_limit=Decimal("75000.00"), status="on_hold")
    record = AuditRecord.objects.filter(action="account.update").get()
    assert record.actor == controller
    assert (record.object_type, record.object_id, record.object_repr) == ("account", str(alpha.pk), "alpha")
    assert (record.before["credit_limit"], record.after["credit_limit"]) == ("50000", "75000")
    assert (record.before["status"], record.after["status"]) == ("active", "on_hold")
    assert {k for k in record.before if record.before[k] != record.after[k]} == {"credit_limit", "status"}
    alpha.refresh_from_db()
    assert (alpha.credit_limit, alpha.status) == (Decimal("75000"), "on_hold")
    # A call that changes nothing writes no record.
    account_update(account=alpha, status="on_hold")
    assert AuditRecord.objects.filter(action="account.update").count() == 1


def test_account_update_keeps_the_rules() -> None:
    root = root_book()
    alpha = account(root, "alpha")
    account(root, "beta", parent=alpha)
    with pytest.raises(ValidationFailed, match="prepaid account has no credit limit"):
        account_update(account=alpha, terms="prepaid")
    account_update(account=alpha, terms="prepaid", credit_limit=None)
    alpha.refresh_from_db()
    assert (alpha.terms, alpha.credit_limit) == ("prepaid", None)
    with pytest.raises(ValidationFailed, match="a customer has no children"):
        account_update(account=alpha, kind="customer")
    with pytest.raises(ValidationFailed, match="status must be one of"):
        account_update(account=alpha, status="frozen")
    with pytest.raises(ValidationFailed, match="net_days"):
        account_update(account=alpha, net_days=-5)


def test_creation_and_own_book_are_audited() -> None:
    root = root_book()
    alpha = account(root, "alpha")
    account(root, "beta", parent=alpha)
    actions = list(AuditRecord.objects.order_by("id").values_list("action", "object_repr"))
    assert actions == [
        ("account.create", "alpha"),
        ("account.own_book_open", "alpha"),
        ("account.create", "beta"),
    ]
    created = AuditRecord.objects.get(action="account.create", object_repr="beta")
    assert created.before is None
    assert created.after["parent"] == "alpha" and created.after["book"] == "alpha"
