"""The Redis cache backend (distributor/cache.py) against a real Redis: set_many with an expiry is
one Lua call, and must store and expire exactly as Django's MSET + EXPIRE did."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from distributor.cache import RedisCache

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (CI sets it)")


@pytest.fixture
def cache() -> Iterator[RedisCache]:
    backend = RedisCache(settings.CACHE_REDIS_URL, {"KEY_PREFIX": f"test-cache-{uuid.uuid4().hex}"})
    yield backend
    backend.delete_many(["a", "b", "c", "d"])


def ttl(cache: RedisCache, key: str) -> int:
    return int(cache._cache.get_client(None).ttl(cache.make_key(key)))


def test_set_many_stores_every_value_with_its_expiry(cache: RedisCache) -> None:
    cache.set_many({"a": {"available": "12.50"}, "b": "text", "c": 7}, timeout=300)
    assert cache.get_many(["a", "b", "c"]) == {"a": {"available": "12.50"}, "b": "text", "c": 7}
    assert [ttl(cache, k) for k in ("a", "b", "c")] == [300, 300, 300]
    # Written again: the new values, the expiry set afresh.
    cache.set_many({"a": {"available": "0.00"}}, timeout=60)
    assert cache.get("a") == {"available": "0.00"} and ttl(cache, "a") == 60


def test_set_many_without_expiry_keeps_keys_and_zero_deletes_them(cache: RedisCache) -> None:
    cache.set_many({"d": 1}, timeout=None)
    assert cache.get("d") == 1 and ttl(cache, "d") == -1
    cache.set_many({"d": 2}, timeout=0)
    assert cache.get("d") is None
