"""Warm a fresh web or worker process up before its first order arrives.

A new process imports most of the order flow lazily (the API views, serializers, services), opens its
database pool and its Redis connections, compiles its hot queries and loads the venue cache on its first
request or task; the first orders after a start or a restart paid for that: a few hundred milliseconds
each at first, 80-140 ms against ~28 ms for the others until 2026-12-05, and in a light load's 50 orders
the slowest is its p99. Web workers run this at ASGI lifespan startup (broker/asgi.py), Celery pool
processes when they start (broker/celery.py), before either takes any work.
"""

from __future__ import annotations

import gc
import importlib
import logging

logger = logging.getLogger(__name__)

MODULES = (
    "celery.backends.redis",
    "celery.result",
    "orders.sequencer",
    "orders.api.views",
    "orders.api.serializers",
    "orders.services",
    "orders.tasks",
    "orders.consumers",
    "settlement.services",
    "pools.services",
    # What the middleware imports on its first response (the messages' storage, the session serializer).
    "django.contrib.messages.storage.fallback",
    "django.contrib.sessions.serializers",
)


# How far this process rehearses the order flow once it is warm (orders.rehearsal.Part), set by its entry
# point before the warm-up: the web (broker/asgi.py) enters an order, an order worker routes and
# matches it too (broker/celery.py). None: no rehearsal.
REHEARSAL: int | None = None
_rehearsed = False


def warm_up() -> None:
    """Import the order flow, resolve the URLs, open the database pool, the caches' and the throttle's
    Redis connections and the Celery broker connection, finalize the Celery app and make this thread's
    result backend, load the venues and their books, start the stream's waker, compile and run once the
    hot queries (broker.sql.rehearse_compiled), and rehearse this process's part of the order flow on a
    real order that is rolled back (`REHEARSAL`, orders.rehearsal).
    Never raises: a process that cannot warm up still starts, and pays at its first order.

    Run it in the thread that will do the work: Celery's result backend is per thread (a web process
    runs it in the executor its first request gets, broker/asgi.py)."""
    try:
        from django.core.cache import cache
        from django.db import connection
        from django.urls import get_resolver

        for module in MODULES:
            importlib.import_module(module)
        get_resolver().url_patterns  # noqa: B018  (imports every view module)
        connection.ensure_connection()
        cache.get("warm-up")
        from broker.api.throttling import throttle_ready
        from broker.cache import shared_cache

        shared_cache().get("warm-up")  # the route-pending marks' client
        throttle_ready()  # the API throttle's counters
        from broker.celery import app

        # Registering every task (the first `apply_async` does it otherwise: ~15 ms) and this thread's
        # Redis result backend (~12 ms: every sent task's AsyncResult asks for it).
        app.finalize(auto=True)
        app.backend  # noqa: B018
        # The broker connection the first publish would open, with every queue declared on it (kombu
        # declares a queue once per connection, on its first publish there) and the task-event
        # dispatcher that publish makes.
        with app.producer_or_acquire() as producer:
            for queue in app.amqp.queues.values():
                producer.maybe_declare(queue)
        getattr(app.amqp, "_event_dispatcher", None)  # a cached property (private: not in the stubs)
        from pools import selectors as pool_selectors

        pool_selectors.pools_active()
        pool_selectors.books_ready_load()  # the tickers whose venues all have a book (routing asks)
        from orders import sequencer

        sequencer.wake_ready()  # the thread and connection that wake the stream's sequencer after commits
        from broker.sql import rehearse_compiled

        rehearse_compiled()  # the order flow's hot queries: compiled, and run once on this connection
        _rehearse()
    except Exception:
        logger.warning("warm-up failed; the first order will pay for it", exc_info=True)
    finally:
        from django.db import connection

        # Back to the pool: this may run in a thread that never serves a request.
        connection.close()
        gc_settle()


def _rehearse() -> None:
    """Once per process: one order through this process's part of the flow, rolled back (orders.rehearsal)."""
    global _rehearsed
    if REHEARSAL is None or _rehearsed:
        return
    _rehearsed = True
    from orders.rehearsal import Part, order_flow_rehearse

    order_flow_rehearse(Part(REHEARSAL))


def gc_settle() -> None:
    """Collect once, then freeze what survives. What the start-up loaded (some 150,000 objects: modules,
    URL patterns, the ORM's metadata) lives as long as the process, yet every full collection would
    walk it again, 20-35 ms during which a request or task waits; the first of them came soon after a
    start, in the middle of the first orders. Frozen objects are never walked again."""
    gc.collect()
    gc.freeze()
