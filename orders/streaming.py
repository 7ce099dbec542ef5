"""Broadcasting fills and order updates to `/ws/fills/` subscribers through the Channels layer.

Called only from `transaction.on_commit` callbacks, so a subscriber never hears of a fill that was rolled
back. Clients are in their customer's group, staff in the staff group.

Each process has one publisher: a daemon thread that owns an event loop and, through it, the channel
layer's Redis connections for the life of the process. `publish` only puts the messages on its queue and
returns, so a commit never waits for Redis and no event loop is made per commit (`async_to_sync` did
both). The thread sends batches in the order they were queued, each group's messages of a batch as one
event (`_send_all`). It is started on first use in each
process (a Celery prefork child, forked from a parent that imported this module, starts its own), and
what it still holds is sent when the process ends: at interpreter exit, when a Celery pool child exits,
and at a web worker's ASGI lifespan shutdown (broker/asgi.py).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

STAFF_GROUP = "fills.staff"
MESSAGE_TYPE = "fills.message"  # dispatched to FillsConsumer.fills_message
# Payloads per channel-layer event: a subscriber's channel holds at most the layer's capacity of events,
# and one event must stay a modest Redis value.
EVENT_PAYLOADS = 100

# Batches (one per commit) waiting for the thread. Bounded so a Redis outage cannot grow memory
# without limit: past it, new batches are dropped and logged (the stream is best effort; trades are
# committed and queryable, and clients catch up from the API).
QUEUE_LIMIT = 10_000
# One batch may not hold the thread longer than this; its socket timeout (CHANNEL_LAYER_SOCKET_TIMEOUT)
# would otherwise decide how long a hung Redis stalls every later message.
SEND_TIMEOUT_SECONDS = 10.0
# How long a process that ends waits for its queued messages to go out.
EXIT_FLUSH_SECONDS = 5.0

Message = tuple[str, dict[str, Any]]


def customer_group(customer_id: str) -> str:
    return f"fills.customer.{customer_id}"


def publish(messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Queue each (customer_id, payload) for that customer's group and for staff, in order; never raises."""
    if not messages:
        return
    try:
        _publisher().put(list(messages))
    except Exception:  # the stream is best effort; the trade is already committed and queryable
        logger.exception("could not queue %d fill stream messages", len(messages))


def flush(timeout: float = EXIT_FLUSH_SECONDS) -> bool:
    """Wait until everything this process published before the call has been sent (or failed and been
    logged). True when done within `timeout` seconds; also True when nothing was ever published here."""
    publisher = _current
    if publisher is None or publisher.pid != os.getpid() or not publisher.thread.is_alive():
        return True
    return publisher.flush(timeout)


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class _Publisher:
    """The publishing thread of one process and its queue (see the module docstring)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[list[Message] | _Flush] = queue.Queue(maxsize=QUEUE_LIMIT)
        self.thread = threading.Thread(target=self._run, name="fill-stream-publisher", daemon=True)
        self.thread.start()

    def put(self, messages: list[Message]) -> None:
        try:
            self.queue.put_nowait(messages)
        except queue.Full:
            logger.error("fill stream queue full (%d batches): dropped %d messages", QUEUE_LIMIT, len(messages))

    def flush(self, timeout: float) -> bool:
        marker = _Flush()
        try:
            # Behind every batch queued so far: when the thread reaches it, they have all been sent.
            self.queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        while True:
            item = self.queue.get()
            batch: list[Message] = []
            # Whatever else is already waiting goes out in the same pass of the loop, still in order.
            while True:
                if isinstance(item, _Flush):
                    self._send(loop, batch)
                    batch = []
                    item.done.set()
                else:
                    batch.extend(item)
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            self._send(loop, batch)

    def _send(self, loop: asyncio.AbstractEventLoop, batch: list[Message]) -> None:
        if not batch:
            return
        try:
            # Looked up per batch: tests that override CHANNEL_LAYERS get a new layer, and the layer
            # keeps one Redis connection pool per event loop, so this thread's stays open between batches.
            layer = get_channel_layer()
            if layer is None:
                return
            loop.run_until_complete(asyncio.wait_for(_send_all(layer, batch), SEND_TIMEOUT_SECONDS))
        except Exception:  # logged and dropped: the thread must live on for the next commit
            logger.exception("could not publish %d fill stream messages", len(batch))


async def _send_all(layer: Any, batch: list[Message]) -> None:
    # One event per group per batch (in chunks), carrying that group's payloads in order: a group_send
    # is several Redis round trips, and a batch of matches streams hundreds of messages to a handful of
    # groups. The consumer sends each payload as a frame of its own, so clients see no difference.
    groups: dict[str, list[dict[str, Any]]] = {}
    for customer_id, payload in batch:
        groups.setdefault(customer_group(customer_id), []).append(payload)
        groups.setdefault(STAFF_GROUP, []).append(payload)
    for group, payloads in groups.items():
        for start in range(0, len(payloads), EVENT_PAYLOADS):
            await layer.group_send(group, {"type": MESSAGE_TYPE, "payloads": payloads[start : start + EVENT_PAYLOADS]})


_current: _Publisher | None = None
_lock = threading.Lock()


def _publisher() -> _Publisher:
    global _current
    publisher = _current
    if publisher is not None and publisher.pid == os.getpid():
        return publisher
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = _Publisher()
        return _current


def _forget_after_fork() -> None:
    # A forked child has the parent's publisher object but not its thread, and the lock may have been
    # held by another thread at the fork: start clean, with a publisher of its own on first use.
    global _current, _lock
    _current = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _flush_at_exit() -> None:
    if not flush(EXIT_FLUSH_SECONDS):
        logger.warning("fill stream: messages still queued after %.0f s at exit were dropped", EXIT_FLUSH_SECONDS)


# An ordinary exit (web worker, management command, test session).
atexit.register(_flush_at_exit)


def _connect_celery_child_exit() -> None:
    # Celery's prefork children leave through os._exit, which skips atexit: flush on their own signal.
    from celery import signals

    signals.worker_process_shutdown.connect(lambda **kwargs: _flush_at_exit(), weak=False)


_connect_celery_child_exit()
