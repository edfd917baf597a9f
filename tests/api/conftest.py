"""The reseller API's world: the public scenario's October, closed and issued, plus a sibling
(gamma, under alpha) and another book's tree (omega), so there is something outside every
subtree to guess at.

    platform (root book)              other (another root book)
    ├── alpha (distributor)           └── omega (distributor)
    │   ├── beta (distributor)            └── omega-kid
    │   │   └── acme (customer)
    │   └── gamma (customer)
    └── devsolo (prepaid customer)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Account
from accounts.services import account_create, api_key_create
from ledger.services import book_create
from tests.settlement.test_close_world import World, october_usage, world_build
from tests.settlement.test_invoicing import issue_all

ALL_SCOPES = ["read", "manage", "usage"]


@dataclass
class ApiWorld:
    world: World
    gamma: Account
    omega: Account
    omega_kid: Account
    secrets: dict[str, str]

    def client(self, code: str) -> APIClient:
        return api(self.secrets[code])


def api(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def build(*, issue: bool = True) -> ApiWorld:
    world = world_build()
    october_usage(world, devsolo_calls=10)
    if issue:
        issue_all(world)
    gamma = account_create(
        root_book=world.book,
        code="gamma",
        name="Gamma Ltd",
        parent=world.alpha,
        kind="customer",
        currency="USD",
        terms="monthly",
        credit_limit=Decimal(100),
    )
    other = book_create(code="other", name="Other Ltd", currency="USD", timezone="UTC", grace_days=0)
    omega = account_create(
        root_book=other, code="omega", name="Omega", kind="distributor", currency="USD", terms="monthly"
    )
    omega_kid = account_create(
        root_book=other,
        code="omega-kid",
        name="Omega Kid",
        parent=omega,
        kind="customer",
        currency="USD",
        terms="monthly",
    )
    world.refresh()
    secrets: dict[str, str] = {}
    for account in (world.alpha, world.beta, world.acme, world.devsolo, gamma, omega):
        secrets[account.code] = api_key_create(account=account, scopes=ALL_SCOPES, name="all")[1]
    return ApiWorld(world=world, gamma=gamma, omega=omega, omega_kid=omega_kid, secrets=secrets)


@pytest.fixture(autouse=True)
def _local_webhooks(settings: Any) -> None:
    """The webhook tests' receiver listens on 127.0.0.1, which production refuses."""
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True


@pytest.fixture
def aw(db: None) -> ApiWorld:
    return build()


def error_of(response: Any) -> dict[str, Any]:
    """The one error body shape: {"error": {"code", "message", "details"}}."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]
