"""The warm-up leaves the process's start-up objects out of later garbage collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from broker.warmup import gc_settle, warm_up


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite collects as it did


@pytest.mark.django_db
def test_warm_up_freezes_what_it_loaded(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    warm_up()
    # everything alive after the warm-up is frozen: the order flow's modules among them
    assert gc.get_freeze_count() > 10_000
    assert gc.get_count()[2] == 0


def test_after_the_freeze_a_collection_no_longer_walks_the_old_objects(unfrozen: None) -> None:
    # given a long-lived object, among those a full collection walks (gc.get_objects: generations 0-2)
    kept: list[object] = [[]]  # a container of a container: tracked by the collector
    assert any(candidate is kept for candidate in gc.get_objects())

    # when the process settles
    gc_settle()

    # then it is frozen: no collection walks it any more, while new objects are still collected
    assert not any(candidate is kept for candidate in gc.get_objects())
    fresh: list[object] = [[]]
    assert any(candidate is fresh for candidate in gc.get_objects())


@pytest.mark.django_db(transaction=True)
def test_the_web_warm_up_runs_in_the_thread_of_the_first_request(unfrozen: None) -> None:
    # Celery's Redis result backend is kept per thread (every sent task asks for it; ~12 ms to make):
    # warming another thread up would leave the first request to make its own.
    import asyncio
    import threading

    from broker.asgi import OneHopASGIHandler
    from broker.celery import app

    def thread_has_backend() -> bool:
        local = getattr(app, "_local")  # noqa: B009  (the per-thread slot, celery.app.base; not in the stubs)
        return getattr(local, "backend", None) is not None

    handler = OneHopASGIHandler()
    assert handler._idle == []

    asyncio.run(handler.warm_up())

    # the executors the next requests get are those the warm-up ran in (several: a health check and an
    # order at once take two), and each one's thread has the backend
    assert len(handler._idle) == OneHopASGIHandler.WARM_EXECUTORS > 1
    assert all(executor.submit(thread_has_backend).result() for executor in handler._idle)
    elsewhere: list[bool] = []
    thread = threading.Thread(target=lambda: elsewhere.append(thread_has_backend()))
    thread.start()
    thread.join()
    assert elsewhere == [False]  # a thread the warm-up did not run in has none
    for executor in handler._idle:
        executor.shutdown()


def test_a_pool_process_warms_up_after_celerys_django_fixup_closed_what_the_fork_inherited() -> None:
    # The fixup closes the database pool when a pool process starts (worker_process_init); a warm-up
    # running before it opened connections for nothing, and the first task opened a new one.
    from celery import signals
    from celery.fixups.django import DjangoFixup

    from broker import celery as broker_celery

    def receivers(signal: object) -> list[object]:
        # Celery keeps a weak reference to each receiver, or the receiver itself when connected weak=False.
        found = []
        for _, receiver in getattr(signal, "receivers"):  # noqa: B009
            target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
            found.append(getattr(target, "__func__", target))  # a bound method: its function
        return found

    # the warm-up is not connected to the pool processes' start at import...
    assert broker_celery._warm_up not in receivers(signals.worker_process_init)
    # ...but when the worker starts, after the fixup's own start (which connects its closing)
    worker_init = receivers(signals.worker_init)
    assert worker_init.index(DjangoFixup.on_worker_init) < worker_init.index(broker_celery._warm_up_pool_processes)
    broker_celery._warm_up_pool_processes()
    try:
        assert receivers(signals.worker_process_init)[-1] is broker_celery._warm_up
    finally:
        signals.worker_process_init.disconnect(dispatch_uid="broker.warm_up")


@pytest.mark.django_db(transaction=True)
def test_the_web_listens_on_the_channel_layer_from_its_start() -> None:
    # channels-redis's pub/sub layer reads its connection only while it holds a subscription (without
    # one it sleeps 100 ms at a time), so the first fill stream after a start got its first messages up
    # to 100 ms late. A web process subscribes to a channel of its own at start and keeps it.
    import asyncio

    from channels.layers import get_channel_layer

    from broker.asgi import listen_always

    async def check() -> None:
        layer: Any = get_channel_layer()
        name = await listen_always()
        try:
            assert name is not None
            assert name.startswith(layer._get_layer().prefix + "broker.process.")
            loop_layer = layer._get_layer()
            shard = loop_layer._get_shard(name)
            assert name in loop_layer.channels
            assert shard._pubsub.subscribed  # the reader reads rather than sleeps
            assert shard._receive_task is not None
            assert not shard._receive_task.done()
        finally:
            await layer.flush()

    asyncio.run(check())
