"""The Redis cache backend, with one redis client per connection pool instead of one per call.

Django's RedisCacheClient builds a new `redis.Redis` object for every cache operation; its
constructor fills a case-insensitive table of ~300 response callbacks, which measured ~0.2 ms of
Python per call, four calls per authorization request (docs/benchmarks.md, "Authorization").
A `redis.Redis` over a connection pool is safe to share between threads (each command takes a
connection from the pool), so one per pool is kept. After a fork the pool notices the new pid and
opens fresh connections.

`set_many` with a timeout is one Lua call that SETs each key with its expiry: Django's sends MSET and
then an EXPIRE per key, and redis-py packing those ~450 commands for every usage batch's credit
cache refresh was ~5 ms of Python."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

# ARGV[1] is the expiry in seconds; ARGV[i + 1] is the value of KEYS[i].
_SET_MANY_WITH_EXPIRY = """
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
"""


class SharedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}
        self._set_many_scripts: dict[int, Any] = {}

    def set_many(self, data: Mapping[Any, Any], timeout: Any) -> None:
        # None keeps keys forever and 0 deletes them: Django's own way for both.
        if not timeout or not data:
            super().set_many(data, timeout)
            return
        client = self.get_client(None, write=True)
        script = self._set_many_scripts.get(id(client))
        if script is None:
            script = self._set_many_scripts[id(client)] = client.register_script(_SET_MANY_WITH_EXPIRY)
        dumps = self._serializer.dumps  # type: ignore[attr-defined]
        script(keys=list(data), args=[timeout, *(dumps(value) for value in data.values())])

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
