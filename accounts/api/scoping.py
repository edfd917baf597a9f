"""The one scoping helper of the reseller API: every view finds accounts, and through them every
invoice, payment, key and webhook, only inside the API key's account and its subtree.

Anything outside the subtree answers 404, never 403: a key must not learn that a sibling's code or
a parent's invoice number exists. Permission (scope `read` or `manage`, writes only below the
key's own account) is checked only after the object was found inside the subtree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from django.db.models import QuerySet
from rest_framework.request import Request

from accounts.models import Account, ApiKey
from accounts.selectors import account_subtree
from distributor.errors import NotFound, PermissionRefused

READ_SCOPE: Final = "read"
MANAGE_SCOPE: Final = "manage"


@dataclass(frozen=True, slots=True)
class Scope:
    """What an authenticated key may reach: `account` and everything below it."""

    key: ApiKey
    account: Account

    def accounts(self) -> QuerySet[Account]:
        """The subtree, the key's own account included."""
        return account_subtree(account=self.account)

    def account_ids(self) -> QuerySet[Account, Any]:
        """The subtree's ids as a subquery, for `account__in=` filters."""
        return self.accounts().values("pk")

    def find(self, code: str) -> Account:
        """An account of the subtree by code; 404 for anything else, existing or not."""
        found = self.accounts().filter(code=code).first()
        if found is None:
            raise NotFound(f"no account {code!r}", details={"account": code})
        return found

    def find_below(self, code: str) -> Account:
        """A strict descendant (which the key may manage); the key's own account answers 403:
        an account's terms, limits and status are set by its parent, not by itself."""
        found = self.find(code)
        if found.pk == self.account.pk:
            raise PermissionRefused(
                f"{code!r} is this key's own account: its parent manages it", details={"account": code}
            )
        return found

    def require(self, scope: str) -> None:
        if scope not in (self.key.scopes or []):
            raise PermissionRefused(f"this API key lacks the {scope!r} scope", details={"scope": scope})


def scope_of(request: Request, *, needs: str = READ_SCOPE) -> Scope:
    """The caller's scope, with the key's `needs` scope checked. The root's service key (the
    gateway's) has no account and no subtree: it is refused here."""
    key = request.auth
    if not isinstance(key, ApiKey) or key.account is None:
        raise PermissionRefused("the reseller API needs an account's API key, not the service key")
    scope = Scope(key=key, account=key.account)
    scope.require(needs)
    return scope
