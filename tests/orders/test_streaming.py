"""The fill stream's publisher (orders/streaming.py): one thread per process that sends what each commit
queued, in order; a forked process (a Celery pool child) gets its own; a failure is logged, never raised.

Everything goes through the real Redis channel layer of the test session; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from celery import signals
from channels.layers import get_channel_layer

from orders import streaming

# A guard against hanging the suite when a message never comes, not a timing assertion.
RECEIVE_GUARD_SECONDS = 10


class Subscriber:
    """A channel in one group of the real layer, read from the test's thread."""

    def __init__(self, group: str) -> None:
        self.layer: Any = get_channel_layer()
        self.group = group
        self.channel = ""

    def join(self) -> None:
        async def join() -> None:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel)

        async_to_sync(join)()

    def leave(self) -> None:
        async_to_sync(self.layer.group_discard)(self.group, self.channel)

    def receive(self, count: int, *, run: str) -> list[dict[str, Any]]:
        """The payloads of the next `count` stream messages of this test run (`run`), in arrival order."""

        async def receive() -> list[dict[str, Any]]:
            payloads: list[dict[str, Any]] = []
            while len(payloads) < count:
                message = await asyncio.wait_for(self.layer.receive(self.channel), RECEIVE_GUARD_SECONDS)
                assert message["type"] == streaming.MESSAGE_TYPE
                # staff see every test's messages
                payloads.extend(payload for payload in message["payloads"] if payload.get("run") == run)
            return payloads

        return async_to_sync(receive)()


@contextmanager
def subscribed(*groups: str) -> Iterator[list[Subscriber]]:
    subscribers = [Subscriber(group) for group in groups]
    for subscriber in subscribers:
        subscriber.join()
    try:
        yield subscribers
    finally:
        for subscriber in subscribers:
            subscriber.leave()


def new_customer_id() -> str:
    return f"T{uuid.uuid4().hex[:10]}"


def test_messages_arrive_in_the_order_they_were_published_for_the_customer_and_for_staff() -> None:
    # given a subscriber on a customer's group and one on the staff group
    run, customer_id = uuid.uuid4().hex, new_customer_id()
    with subscribed(streaming.customer_group(customer_id), streaming.STAFF_GROUP) as (customer, staff):
        # when 150 commits publish two messages each, one commit after another
        for number in range(150):
            streaming.publish(
                [
                    (customer_id, {"type": "fill", "run": run, "sequence": 2 * number}),
                    (customer_id, {"type": "order", "run": run, "sequence": 2 * number + 1}),
                ]
            )

        # then publish returned before sending: flush is what waits for the thread
        assert streaming.flush(timeout=RECEIVE_GUARD_SECONDS)
        # and both groups received all 300, in publish order
        expected = list(range(300))
        assert [payload["sequence"] for payload in customer.receive(300, run=run)] == expected
        assert [payload["sequence"] for payload in staff.receive(300, run=run)] == expected


def test_a_forked_pool_child_publishes_with_its_own_thread_and_flushes_on_its_way_out() -> None:
    # given this process's publisher thread is running (a Celery parent imports, may publish, then forks)
    run, customer_id = uuid.uuid4().hex, new_customer_id()
    with subscribed(streaming.customer_group(customer_id)) as (customer,):
        streaming.publish([(customer_id, {"type": "order", "run": run, "sequence": 0})])
        assert streaming.flush(timeout=RECEIVE_GUARD_SECONDS)

        # when a forked child publishes and leaves as a prefork pool process does: Celery's
        # worker_process_shutdown signal, then os._exit (which skips atexit)
        pid = os.fork()
        if pid == 0:  # the child: whatever happens, it must not return into pytest
            code = 1
            try:
                streaming.publish([(customer_id, {"type": "fill", "run": run, "sequence": 1})])
                signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)

        # then the child exited cleanly, and its message arrived after the parent's: the parent's
        # thread does not exist in the child, so a thread of the child's own sent it before it exited
        assert os.waitstatus_to_exitcode(status) == 0
        assert [payload["sequence"] for payload in customer.receive(2, run=run)] == [0, 1]
        # and the parent's publisher still works
        streaming.publish([(customer_id, {"type": "order", "run": run, "sequence": 2})])
        assert [payload["sequence"] for payload in customer.receive(1, run=run)] == [2]


def test_a_broken_channel_layer_is_logged_never_raised_and_the_publisher_carries_on(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given a channel layer whose Redis refuses connections (port 1)
    working = settings.CHANNEL_LAYERS
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    customer_id = new_customer_id()

    # when a commit publishes
    streaming.publish([(customer_id, {"type": "fill", "run": "broken", "sequence": 0})])

    # then the caller was not disturbed, and the failure was logged once the thread tried
    assert streaming.flush(timeout=RECEIVE_GUARD_SECONDS)
    assert "could not publish 1 fill stream messages" in caplog.text

    # when the layer works again
    settings.CHANNEL_LAYERS = working
    run = uuid.uuid4().hex
    with subscribed(streaming.customer_group(customer_id)) as (customer,):
        streaming.publish([(customer_id, {"type": "fill", "run": run, "sequence": 1})])

        # then the same thread delivers the next commit's messages
        assert [payload["sequence"] for payload in customer.receive(1, run=run)] == [1]
