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
from django.core.signals import setting_changed

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
