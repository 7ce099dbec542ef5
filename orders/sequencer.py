"""The fill stream's sequencer: the one process that gives committed events their eventIds and
publishes them (`manage.py stream_sequencer`, started by `make run`).

The order flow's transactions write their events without ids (orders/outbox.py) and, once committed,
`wake` the sequencer through Redis. Each pass numbers everything committed since the last one, in one
statement, commits, and only then sends it to the Channels groups (orders/streaming.py): a client never
sees an id that could still roll back, and ids follow commit order without the writers waiting on each
other. Wakes coalesce (the wake list holds one entry), and a pass also runs every
`STREAM_SEQUENCER_POLL_SECONDS`, so a wake that is lost (Redis down) only delays the events.

One sequencer leads at a time: it holds a session-level advisory lock on its database connection for as
long as it runs. Another one (a second stack on the same database, a restart that overlaps) waits on
standby and takes over when the lock is released: by the leader when it stops, by Postgres when the
leader's connection ends, however the leader died. A new leader starts its groups' ranges from the
newest id it finds, so subscribers check the table once for anything the previous leader numbered but
never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from orders import outbox, streaming

logger = logging.getLogger(__name__)

LEADER_LOCK = 7_211_014  # pg_advisory_lock key held by the leading sequencer's connection
STANDBY_SECONDS = 1.0  # how often a sequencer on standby (or after a database error) tries to lead
# One publish may not hold the sequencer longer than this; a hung Redis would otherwise stall the
# numbering too (what is numbered meanwhile goes out with the next pass, or from the table).
SEND_TIMEOUT_SECONDS = 10.0


def wake_key() -> str:
    """The Redis list that wakes the sequencer of this database (two stacks may share one Redis)."""
    return f"broker:stream:wake:{connection.settings_dict['NAME']}"


_client: tuple[int, redis.Redis] | None = None


def _redis() -> redis.Redis:
    """This process's Redis client for wakes (the shared cache's Redis; redis-py pools connections)."""
    global _client
    if _client is None or _client[0] != os.getpid():
        location = str(settings.CACHES["default"]["LOCATION"])
        # Above the blocking read of `wait_for_wake`, which uses the same client in the sequencer.
        timeout = settings.STREAM_SEQUENCER_POLL_SECONDS + 5
        _client = (os.getpid(), redis.Redis.from_url(location, socket_timeout=timeout, socket_connect_timeout=2))
    return _client[1]


def wake() -> None:
    """Tell the sequencer that events have committed; never blocks nor raises (a thread of this process
    sends it, and the sequencer's own polling finds whatever a lost wake announced)."""
    _wake_queue().put(wake_key())


def wake_ready() -> None:
    """Start this process's waking thread and open its Redis connection now (a process's warm-up),
    not at the first commit of events. Raises if Redis cannot be reached."""
    _wake_queue()
    _redis().ping()


def _wake_queue() -> queue.SimpleQueue[str]:
    global _waker
    if _waker is None or _waker[0] != os.getpid():  # none yet, or one of the parent before a fork
        waker: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=_send_wakes, args=(waker,), name="stream-wake", daemon=True).start()
        _waker = (os.getpid(), waker)
    return _waker[1]


_waker: tuple[int, queue.SimpleQueue[str]] | None = None


def _send_wakes(waker: queue.SimpleQueue[str]) -> None:
    # Off the committing thread: a request or task returns without waiting for Redis, and the wakes
    # that queue up meanwhile go out as one.
    while True:
        keys = {waker.get()}
        with contextlib.suppress(queue.Empty):
            while True:
                keys.add(waker.get_nowait())
        try:
            pipe = _redis().pipeline(transaction=False)
            for key in keys:
                pipe.lpush(key, 1)
                pipe.ltrim(key, 0, 0)  # one pending wake is as good as many
            pipe.execute()
        except Exception:
            logger.warning("could not wake the stream sequencer; it finds the events at its next poll", exc_info=True)


class Sequencer:
    """Numbers and publishes events until `stop` is set (`run`); `run_pass` does one pass's work."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.leading = False
        self.loop = asyncio.new_event_loop()
        self._lock_connection: Any = None
        self.start_id = 0  # the newest id when this sequencer began leading
        self.top = 0  # the newest id this sequencer numbered or found
        self.sent_upto: dict[str, int] = {}  # group -> where its last message ended (orders.streaming.frame)
        self._group_publisher: GroupPublisher | None = None

    def run(self) -> None:
        self._warm_up()
        try:
            while not self.stop.is_set():
                try:
                    if self._lead():
                        self.run_pass()
                        self._wait_for_wake()
                    else:
                        self.stop.wait(STANDBY_SECONDS)
                except Exception:
                    # A database error may have taken the connection, and with it the lock: lead again
                    # from scratch (anything else, too: the stream must not stop for one bad pass).
                    logger.exception("stream sequencer: pass failed; trying again in %.0f s", STANDBY_SECONDS)
                    self._resign()
                    self.stop.wait(STANDBY_SECONDS)
        finally:
            self._resign()
            self.loop.close()

    def _warm_up(self) -> None:
        """Open the channel layer's Redis connection before the first events: a publish to a group no
        one listens to. Without it the first fill after a start waited for that connection."""
        try:
            layer = get_channel_layer()
            if layer is not None:
                self.loop.run_until_complete(
                    asyncio.wait_for(layer.group_send("broker.warm-up", {"type": "warm.up"}), SEND_TIMEOUT_SECONDS)
                )
        except Exception:  # the first pass opens it, or logs why it cannot
            logger.warning("stream sequencer: could not reach the channel layer at start", exc_info=True)

    def _lead(self) -> bool:
        """True while this sequencer holds the leader's lock on its current connection."""
        if self.leading and connection.connection is not None and connection.connection is self._lock_connection:
            return True  # the same connection: the lock is still held (a broken one raises, and we resign)
        self.leading = False
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK])
            (locked,) = cursor.fetchone()
        if not locked:
            return False
        self.leading = True
        self._lock_connection = connection.connection
        self.start_id = self.top = outbox.last_event_id(customer_pk=None)
        self.sent_upto = {}
        logger.info("stream sequencer leading from eventId %d", self.start_id)
        return True

    def _resign(self) -> None:
        if self.leading:
            # Released by hand: the connection goes back to the process's pool, not away (a process
            # that dies takes its pool's connections, and the lock, with it).
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [LEADER_LOCK])
            except Exception:  # the connection is broken: the lock went with it
                logger.warning("stream sequencer: could not release the leader's lock", exc_info=True)
        self.leading = False
        self._lock_connection = None
        connection.close()

    def run_pass(self) -> int:
        """Number and publish everything committed and not numbered yet; the number of events."""
        count = 0
        while True:
            numbered = outbox.events_sequence()
            if numbered.events:
                self._publish(numbered)
                count += len(numbered.events)
            if len(numbered.events) < outbox.SEQUENCE_BATCH:
                return count

    def _publish(self, numbered: outbox.Numbered) -> None:
        if numbered.after < self.top:
            # Ids went back: the table was emptied under us (tests flush it); the ranges sent so far
            # mean nothing any more.
            self.start_id = numbered.after
            self.sent_upto = {}
        self.top = numbered.upto
        # Framed (and `sent_upto` moved on) even if the send below fails: the next message of each
        # group then starts beyond what its subscribers saw, and they read the table.
        messages = streaming.frame(numbered.events, upto=numbered.upto, sent_upto=self.sent_upto, start=self.start_id)
        try:
            layer = get_channel_layer()
            if layer is None:
                return
            publisher = self._publisher(layer)
            if publisher is not None:
                publisher.send(messages)
            else:
                self.loop.run_until_complete(asyncio.wait_for(_send(layer, messages), SEND_TIMEOUT_SECONDS))
        except Exception:  # logged; subscribers catch up from the table
            logger.exception("stream sequencer: could not publish events %d..%d", numbered.after + 1, numbered.upto)

    def _publisher(self, layer: Any) -> GroupPublisher | None:
        if self._group_publisher is None or self._group_publisher.layer is not layer:
            self._group_publisher = GroupPublisher.for_layer(layer)
        return self._group_publisher

    def _wait_for_wake(self) -> None:
        try:
            _redis().blpop([wake_key()], timeout=settings.STREAM_SEQUENCER_POLL_SECONDS)
        except Exception:  # Redis down: poll the table instead
            logger.warning("stream sequencer: could not wait for a wake", exc_info=True)
            self.stop.wait(settings.STREAM_SEQUENCER_POLL_SECONDS)


class GroupPublisher:
    """Sends a pass's messages to their Channels groups as channels-redis's pub/sub layer does (a PUBLISH
    of the layer's own serialization to the group's channel, `<prefix>__group__<group>`), all of them in
    one pipelined round trip of a synchronous Redis client, in order.

    Through the layer, each message was a PUBLISH round trip of its own, awaited on an event loop run
    for every pass: 55% of the sequencer's CPU at 100 orders/s went to the loop, the tasks and the
    asynchronous client. Only for the pub/sub layer on one Redis host (`for_layer` is None otherwise,
    and the layer's own `group_send` is used): with several hosts the layer picks one per channel.
    The stream's tests receive these messages through the real layer in the web processes.
    """

    def __init__(self, layer: Any, client: redis.Redis, prefix: str) -> None:
        self.layer = layer
        self.client = client
        self.prefix = prefix

    @classmethod
    def for_layer(cls, layer: Any) -> GroupPublisher | None:
        from channels_redis.pubsub import RedisPubSubChannelLayer

        layers: dict[str, Any] = settings.CHANNEL_LAYERS
        config: dict[str, Any] = layers.get("default", {}).get("CONFIG", {})
        hosts = list(config.get("hosts") or [])
        if not isinstance(layer, RedisPubSubChannelLayer) or len(hosts) != 1:
            return None
        host = hosts[0]
        address = host.get("address") if isinstance(host, dict) else host
        if not isinstance(address, str):
            return None
        client = redis.Redis.from_url(address, socket_timeout=SEND_TIMEOUT_SECONDS, socket_connect_timeout=2)
        return cls(layer, client, str(config.get("prefix", "asgi")))

    def send(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for group, message in messages:
            pipe.publish(f"{self.prefix}__group__{group}", self.layer.serialize(message))
        pipe.execute()


async def _send(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    # The groups at once (each group_send is a PUBLISH round trip), each group's messages in order.
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group, message in messages:
        by_group.setdefault(group, []).append(message)

    async def send_group(group: str, in_order: list[dict[str, Any]]) -> None:
        for message in in_order:
            await layer.group_send(group, message)

    await asyncio.gather(*(send_group(group, in_order) for group, in_order in by_group.items()))
