"""The gateway's authorization call answered before most of Django's request handling (§6).

The gateway asks before every API call it forwards, so this request is the API's most frequent by
far. In its steady state (settlement.api.views.authorization_from_cache: the key, the account and
the credit entries all cached) the answer is one cache read; Django's session, CSRF, auth, messages
and common middleware, URL resolving and the view machinery around it were more than half of the
request's CPU time (docs/benchmarks.md). This middleware sits after SecurityMiddleware and
WhiteNoise, so the security headers, the TLS redirect and the host check still apply, and adds the
X-Frame-Options header the skipped XFrameOptionsMiddleware would have. Anything it cannot answer
plainly (another path or method, an unknown host, a key, account or entry not cached, an account
outside the key's subtree) goes on through the whole stack to the DRF view, which answers with its
errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

from settlement.api.views import authorization_from_cache

# The path of settlement.api.urls' "account-authorization" (tests/settlement/test_authorization.py
# holds them together).
AUTHORIZATION_PATH = re.compile(r"/api/v1/accounts/([^/]+)/authorization")


class AuthorizationFastPathMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.method == "GET":
            match = AUTHORIZATION_PATH.fullmatch(request.path_info)
            if match is not None:
                answered = self._answer(request, match.group(1))
                if answered is not None:
                    return answered
        return self.get_response(request)

    @staticmethod
    def _answer(request: HttpRequest, code: str) -> HttpResponseBase | None:
        try:
            request.get_host()  # what CommonMiddleware would check: a bad Host is Django's 400
        except DisallowedHost:
            return None
        answered = authorization_from_cache(request, code)
        if answered is None:
            return None
        answered["Content-Length"] = str(len(answered.content))
        answered["X-Frame-Options"] = getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()
        return answered
