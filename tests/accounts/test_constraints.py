"""The database keeps the tree's invariants even when the ORM and the services are bypassed."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from tests.accounts.factories import account, root_book

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("sql", "constraint"),
    [
        (
            "UPDATE accounts_account SET credit_limit = 5 WHERE code = 'devsolo'",
            "account_prepaid_no_credit_limit",
        ),
        (
            "UPDATE accounts_account SET credit_limit = -1 WHERE code = 'alpha'",
            "account_credit_limit_not_negative",
        ),
        ("UPDATE accounts_account SET depth = 3 WHERE code = 'beta'", "account_depth"),
        ("UPDATE accounts_account SET ancestor_ids = '{}' WHERE code = 'beta'", "account_depth"),
        ("UPDATE accounts_account SET tax_rate = 2 WHERE code = 'alpha'", "account_tax_rate_range"),
        ("UPDATE accounts_account SET status = 'frozen' WHERE code = 'alpha'", "account_status_valid"),
        ("UPDATE accounts_account SET own_book_id = book_id WHERE code = 'devsolo'", "account_own_book"),
        ("UPDATE accounts_apikey SET scopes = '{admin}'", "api_key_scopes_valid"),
        ("UPDATE accounts_apikey SET scopes = '{}'", "api_key_scopes_valid"),
        ("UPDATE accounts_account SET code = 'alpha' WHERE code = 'beta'", "accounts_account_code"),
    ],
)
def test_database_refuses_broken_rows(sql: str, constraint: str) -> None:
    from accounts.services import api_key_create

    root = root_book()
    alpha = account(root, "alpha")
    account(root, "beta", parent=alpha)
    account(root, "devsolo", kind="customer", terms="prepaid")
    api_key_create(account=alpha, scopes=["read"])
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
