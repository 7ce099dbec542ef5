"""The ASGI handler keeps each request on one thread and hands that thread to the next request.

Django's own handler starts a thread (and a joiner thread) per request; everything kept per thread
(Celery's result backend, for one) then started over for every order entered (broker/asgi.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.core.signals import request_finished

from broker.asgi import OneHopASGIHandler


@pytest.fixture
def served_on() -> Any:
    """The threads that finished each request, in order: Django sends request_finished from the
    request's own thread when it closes the response. The Thread objects, not their idents: a thread
    that has ended may leave its ident to the next one (compared by identity, the objects are kept
    alive by this list)."""
    threads: list[threading.Thread] = []

    def remember(**kwargs: Any) -> None:
        threads.append(threading.current_thread())

    request_finished.connect(remember)
    yield threads
    request_finished.disconnect(remember)


def _get(handler: OneHopASGIHandler, path: str) -> int:
    response = async_to_sync(HttpCommunicator(handler, "GET", path, headers=[(b"host", b"localhost")]).get_response)()
    return int(response["status"])


def test_consecutive_requests_run_on_one_kept_thread(served_on: list[threading.Thread]) -> None:
    handler = OneHopASGIHandler()
    # An unknown API path: a full trip through the middleware and the URL resolver, no database.
    assert _get(handler, "/api/no-such-endpoint") == 404
    assert len(handler._idle) == 1
    executor = handler._idle[0]
    assert _get(handler, "/api/no-such-endpoint") == 404
    assert _get(handler, "/api/no-such-endpoint") == 404

    assert handler._idle == [executor]
    assert len(served_on) == 3
    assert all(thread is served_on[0] for thread in served_on), "each request ran on a new thread"
    assert served_on[0] is not threading.current_thread()
    executor.shutdown()


def test_executors_beyond_the_kept_number_are_shut_down(served_on: list[threading.Thread]) -> None:
    handler = OneHopASGIHandler()
    handler.KEEP_EXECUTORS = 0
    assert _get(handler, "/api/no-such-endpoint") == 404
    assert _get(handler, "/api/no-such-endpoint") == 404

    assert handler._idle == []
    assert len(served_on) == 2
    # Nothing kept: the second request had a thread of its own.
    assert served_on[0] is not served_on[1]
