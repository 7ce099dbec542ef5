"""The default cache as one object per process, for the order flow's hot paths.

Django keeps a cache object per thread (per asyncio context), and under ASGI every request runs in a
thread of its own (Django's ThreadSensitiveContext): each request built a new RedisCache, with a new
connection pool, and so opened a new Redis connection for the first cache call it made. The order entry
path makes two (the halts' version, the route task's mark): opening those connections cost more CPU
than the calls. One object per process keeps one pool, whose connections are reused by every thread
(redis-py's pool is thread-safe, and resets itself in a forked child).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache.backends import redis as django_redis
from django.core.signals import setting_changed


class _ClientKeepingRedisCacheClient(django_redis.RedisCacheClient):
    """Django's Redis cache client, with one redis-py client per connection pool kept for good.

    Django builds a new `redis.Redis` for every cache call, and each one copies redis-py's table of
    response callbacks (some 250 entries): more CPU than the round trip, and 7% of a web process's
    GIL time at 100 orders/s (order entry makes two cache calls, the halts' version and the route
    mark). A redis-py client is thread-safe, and its pool resets itself in a forked child.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Django's own steps (private, so not in django-stubs): the server for this call, its pool.
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
            client = self._clients[index] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(django_redis.RedisCache):
    """`django.core.cache.backends.redis.RedisCache` that keeps its redis-py clients (above)."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ClientKeepingRedisCacheClient


_shared: tuple[int, BaseCache] | None = None


def shared_cache() -> BaseCache:
    global _shared
    pid = os.getpid()
    if _shared is None or _shared[0] != pid:
        _shared = (pid, caches.create_connection(DEFAULT_CACHE_ALIAS))
    return _shared[1]


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _shared
    if setting == "CACHES":  # a test that changes the settings gets the cache they name
        _shared = None


setting_changed.connect(_forget, weak=False)
