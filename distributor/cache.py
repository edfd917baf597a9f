"""The Redis cache backend, with one redis client per connection pool instead of one per call.

Django's RedisCacheClient builds a new `redis.Redis` object for every cache operation; its
constructor fills a case-insensitive table of ~300 response callbacks, which measured ~0.2 ms of
Python per call, four calls per authorization request (docs/benchmarks.md, "Authorization").
A `redis.Redis` over a connection pool is safe to share between threads (each command takes a
connection from the pool), so one per pool is kept. After a fork the pool notices the new pid and
opens fresh connections."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class SharedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Django's own attributes, absent from its type stubs.
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedClientRedisCacheClient
