"""API throttles: requests per user (a token is one user) and scope, counted in Redis so that every
web process shares one count.

Scopes: `orders` (order entry and cancel), `market-data` (market-data jobs) and `default` (every other
request). A view names its scope with `throttle_scope`; that scope counts the view's writes (POST,
PUT, PATCH, DELETE), while its reads count against `default`. Rates come from settings
(`API_THROTTLE_RATES`, read from API_THROTTLE_ORDERS, API_THROTTLE_MARKET_DATA and API_THROTTLE_DEFAULT),
as "<requests>/<period>" with a period of s, min, h or day.

The count is a fixed window per rate period: one Redis round trip per request (INCR and EXPIRE, sent
together), where DRF's sliding-window throttles read and write the whole request history (thousands of
timestamps at the benchmark's rates). A window's budget is whole; a client may spend one window's budget
at its end and the next one's at the start.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from redis import Redis
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

ORDERS = "orders"
MARKET_DATA = "market-data"
DEFAULT = "default"
SCOPES = (ORDERS, MARKET_DATA, DEFAULT)

PERIOD_SECONDS = {"s": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "day": 86400}


def rate_parse(rate: str) -> tuple[int, int]:
    """Requests and seconds of a rate ("6000/min" -> 6000, 60); ImproperlyConfigured names a bad one."""
    count, _, period = rate.strip().partition("/")
    if not count.isdigit() or int(count) < 1 or period not in PERIOD_SECONDS:
        raise ImproperlyConfigured(
            f"A throttle rate is '<requests>/<period>' with a period of {', '.join(PERIOD_SECONDS)}; not {rate!r}"
        )
    return int(count), PERIOD_SECONDS[period]


class ScopeThrottled(exceptions.Throttled):
    """429 naming the scope and when to retry, in the body and in `Retry-After`."""

    def __init__(self, *, scope: str, rate: str, wait: int) -> None:
        super().__init__(wait=wait)
        message = f"Too many requests in scope '{scope}' (limit {rate}); retry in {wait} seconds."
        self.detail: Any = {"detail": message, "scope": scope, "retryAfter": wait}


_cache: BaseCache | None = None
_redis: Redis | None = None


def throttle_cache() -> BaseCache:
    """One cache client (one Redis connection pool) per process: `caches[...]` would build one per
    request context under ASGI."""
    global _cache
    if _cache is None:
        _cache = caches.create_connection(settings.API_THROTTLE_CACHE)
    return _cache


def throttle_ready() -> None:
    """Open the throttle's Redis connection now (a web process's warm-up), not at the first request."""
    client = _throttle_redis(throttle_cache())
    if client is not None:
        client.ping()


def _throttle_redis(cache: BaseCache) -> Redis | None:
    """One redis-py client on the cache's own connection pool, for the life of the process; None when the
    throttle cache is not Redis. Django's own RedisCache builds a new client for every call, which copies
    redis-py's table of response callbacks each time: more CPU than the round trip itself (the default
    cache, broker.cache.RedisCache, keeps its clients; API_THROTTLE_CACHE may name another)."""
    global _redis
    if _redis is None and isinstance(cache, RedisCache):
        _redis = cache._cache.get_client(write=True)
    return _redis


class ScopedUserThrottle(BaseThrottle):
    """Every API view's throttle (REST_FRAMEWORK's DEFAULT_THROTTLE_CLASSES). Anonymous requests are
    not counted: the permission check has answered them 401 before throttles run, except /api/health,
    which stays open to monitors."""

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return True
        scope = DEFAULT if request.method in SAFE_METHODS else getattr(view, "throttle_scope", DEFAULT)
        rate = settings.API_THROTTLE_RATES[scope]
        limit, period = rate_parse(rate)
        now = time.time()
        window = int(now // period)
        count = self._count(f"throttle:{scope}:{user.pk}:{period}:{window}", period)
        if count is not None and count > limit:
            raise ScopeThrottled(scope=scope, rate=rate, wait=max(1, math.ceil((window + 1) * period - now)))
        return True

    @staticmethod
    def _count(key: str, period: int) -> int | None:
        """This request's number in its window; None when Redis cannot be reached: the API keeps
        taking orders without throttles rather than refusing every request (it accepts orders while
        the Celery broker is down, too)."""
        cache = throttle_cache()
        try:
            client = _throttle_redis(cache)
            if client is not None:
                # The key as the cache names it (prefix and version), so its count reads as the cache's.
                # EXPIRE with every INCR: a window's key never outlives it by more than one period.
                name = cache.make_key(key)
                pipeline = client.pipeline(transaction=False)
                pipeline.incr(name)
                pipeline.expire(name, period + 1)
                count, _ = pipeline.execute()
                return int(count)
            if cache.add(key, 1, timeout=period + 1):
                return 1
            try:
                return int(cache.incr(key))
            except ValueError:  # the window's key expired between add and incr: a new window
                cache.add(key, 1, timeout=period + 1)
                return 1
        except (RedisError, OSError) as error:
            logger.warning("API throttle not counted (Redis unavailable): %s", error)
            return None
