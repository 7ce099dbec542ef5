"""The warm-up leaves the process's start-up objects out of later garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

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

    # the executor the next request gets is the one the warm-up ran in, and its thread has the backend
    assert len(handler._idle) == 1
    assert handler._idle[-1].submit(thread_has_backend).result()
    elsewhere: list[bool] = []
    thread = threading.Thread(target=lambda: elsewhere.append(thread_has_backend()))
    thread.start()
    thread.join()
    assert elsewhere == [False]  # a thread the warm-up did not run in has none
    handler._idle[-1].shutdown()
