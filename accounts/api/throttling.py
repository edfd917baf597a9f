"""Rate limiting per API key (not per IP: many customers share a NAT, one key may spread over many
hosts). Counters live in the Django cache, Redis in production, so every web process shares them.
The rate is `settings.API_KEY_RATE` (env API_KEY_RATE, e.g. "1200/min"), read on each request so a
test can change it."""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_rate(self) -> str | None:
        return str(getattr(settings, "API_KEY_RATE", "1200/min"))

    def allow_request(self, request: Request, view: APIView) -> bool:
        # The rate is re-read per request (the parent parses it once, at construction).
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        key_id = getattr(request.auth, "pk", None)
        if key_id is None:
            return None  # unauthenticated: refused by the permission check, nothing to count
        return self.cache_format % {"scope": self.scope, "ident": key_id}
