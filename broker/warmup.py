"""Warm a fresh web or worker process up before its first order arrives.

A new process imports most of the order flow lazily (the API views, serializers, services), opens its
database pool and its Redis connections, and loads the venue cache on its first request or task; the
first orders after a start or a restart paid for that: a few hundred milliseconds each, the p99 of a
light load. Web workers run this at ASGI lifespan startup (broker/asgi.py), Celery pool processes when
they start (broker/celery.py), before either takes any work.
"""

from __future__ import annotations

import gc
import importlib
import logging

logger = logging.getLogger(__name__)

MODULES = (
    "orders.api.views",
    "orders.api.serializers",
    "orders.services",
    "orders.tasks",
    "orders.consumers",
    "settlement.services",
    "pools.services",
)


def warm_up() -> None:
    """Import the order flow, resolve the URLs, open the database pool, the shared cache and the Celery
    broker connection, load the venues. Never raises: a process that cannot warm up still starts, and
    pays at its first order."""
    try:
        from django.core.cache import cache
        from django.db import connection
        from django.urls import get_resolver

        for module in MODULES:
            importlib.import_module(module)
        get_resolver().url_patterns  # noqa: B018  (imports every view module)
        connection.ensure_connection()
        cache.get("warm-up")
        from broker.celery import app

        with app.pool.acquire(block=True) as broker:  # the connection its first task publish would open
            broker.ensure_connection(max_retries=1)  # type: ignore[attr-defined]  # celery-types: a Producer; it is a Connection
        from pools import selectors as pool_selectors

        pool_selectors.pools_active()
    except Exception:
        logger.warning("warm-up failed; the first order will pay for it", exc_info=True)
    finally:
        from django.db import connection

        # Back to the pool: this may run in a thread that never serves a request.
        connection.close()
        gc_settle()


def gc_settle() -> None:
    """Collect once, then freeze what survives. What the start-up loaded (some 150,000 objects: modules,
    URL patterns, the ORM's metadata) lives as long as the process, yet every full collection would
    walk it again, 20-35 ms during which a request or task waits; the first of them came soon after a
    start, in the middle of the first orders. Frozen objects are never walked again."""
    gc.collect()
    gc.freeze()
