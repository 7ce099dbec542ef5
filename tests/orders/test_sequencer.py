"""The fill stream's sequencer (orders/sequencer.py): eventIds follow commit order under concurrent
writers, so a subscriber gets every event once and in order; one sequencer leads and another takes over
when it goes; each group's messages account for contiguous ranges of ids (orders/streaming.py).

Real Postgres, real Redis channel layer, the real consumer; writers are threads with their own
connections, committing at moments they do not choose."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction

from broker.models import Customer
from orders import outbox, streaming
from orders.models import StreamEvent
from orders.sequencer import GroupPublisher, Sequencer, wake
from tests.conftest import Market, staff_client
from tests.stack import wait_for
from tests.streams import JOIN_SECONDS, all_numbered

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 4
TRANSACTIONS = 25
EVENTS_PER_TRANSACTION = 2


def test_frame_accounts_for_contiguous_ranges_per_group() -> None:
    # given a publisher that began at id 10 and last sent customer A's group up to 12
    sent_upto = {streaming.customer_group("A"): 12}
    events = [("A", 13, '{"eventId": 13}'), ("B", 14, '{"eventId": 14}'), ("A", 15, '{"eventId": 15}')]

    # when a pass numbered up to 16 is framed
    messages = streaming.frame(events, upto=16, sent_upto=sent_upto, start=10)

    # then each group gets its events with the range since its last message, up to the pass's end
    by_group = dict(messages)
    ranges = {
        group: (m["after"], m["upto"], [event_id for event_id, _ in m["events"]]) for group, m in by_group.items()
    }
    assert ranges == {
        streaming.customer_group("A"): (12, 16, [13, 15]),
        streaming.customer_group("B"): (10, 16, [14]),
        streaming.STAFF_GROUP: (10, 16, [13, 14, 15]),
    }
    assert sent_upto == dict.fromkeys(by_group, 16)


def test_frame_chains_the_chunks_of_a_large_pass() -> None:
    events = [("A", n, f'{{"eventId": {n}}}') for n in range(1, 251)]

    messages = streaming.frame(events, upto=260, sent_upto={}, start=0)

    ranges = [(m["after"], m["upto"], len(m["events"])) for g, m in messages if g == streaming.STAFF_GROUP]
    assert ranges == [(0, 100, 100), (100, 200, 100), (200, 260, 50)]


@dataclass
class Written:
    """One writer's transactions: for each, its payload notes and when it began and committed."""

    notes: list[list[str]] = field(default_factory=list)
    began: list[float] = field(default_factory=list)
    committed: list[float] = field(default_factory=list)


def _writer(number: int, customer_pk: int, start: threading.Event, written: Written) -> None:
    rng = random.Random(number)
    start.wait()
    try:
        for transaction_number in range(TRANSACTIONS):
            notes = [f"w{number}-t{transaction_number}-e{e}" for e in range(EVENTS_PER_TRANSACTION)]
            began = time.monotonic()
            with transaction.atomic():
                outbox.events_record([(customer_pk, {"type": "order", "order": {"note": note}}) for note in notes])
                # Held open for a random while: the commits land in an order no insert order predicts.
                time.sleep(rng.uniform(0, 0.004))
            written.committed.append(time.monotonic())
            written.began.append(began)
            written.notes.append(notes)
            wake()
    finally:
        connection.close()


def test_concurrent_writers_every_event_reaches_a_subscriber_once_in_commit_order(
    market: Market, sequencer: Sequencer
) -> None:
    staff_client()
    from rest_framework.authtoken.models import Token

    token = Token.objects.get(user__username="desk").key
    customer_pk = Customer.objects.get(customer_id="000002").pk
    total = WRITERS * TRANSACTIONS * EVENTS_PER_TRANSACTION
    start = threading.Event()
    written = [Written() for _ in range(WRITERS)]
    writers = [
        threading.Thread(target=_writer, args=(n, customer_pk, start, written[n]), daemon=True) for n in range(WRITERS)
    ]

    async def subscribe() -> list[dict[str, Any]]:
        from broker.asgi import application

        communicator = WebsocketCommunicator(application, f"/ws/fills/?token={token}")
        connected, _ = await communicator.connect()
        assert connected
        received: list[dict[str, Any]] = []
        try:
            assert json.loads((await communicator.receive_output(timeout=10))["text"])["type"] == "subscribed"
            for writer in writers:
                writer.start()
            start.set()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60  # a guard against hanging the suite, not a timing assertion
            while len(received) < total and loop.time() < deadline:
                message = json.loads((await communicator.receive_output(timeout=30))["text"])
                if message["type"] == "order":
                    received.append(message)
            # and nothing more comes after the last one (no duplicate trailing behind)
            assert await communicator.receive_nothing(timeout=1.0)
        finally:
            await communicator.disconnect()
        return received

    received = asyncio.run(subscribe())
    for writer in writers:
        writer.join(JOIN_SECONDS)

    # then every event arrived exactly once, ids growing by one (staff see them all)
    ids = [message["eventId"] for message in received]
    assert len(ids) == total
    assert ids == list(range(ids[0], ids[0] + total))
    at = {message["order"]["note"]: message["eventId"] for message in received}
    assert len(at) == total
    # and a transaction committed before another began has the lower ids; each one's events are
    # contiguous in the order it wrote them
    transactions = [
        (w.began[t], w.committed[t], [at[note] for note in w.notes[t]]) for w in written for t in range(TRANSACTIONS)
    ]
    for _, _, event_ids in transactions:
        assert event_ids == list(range(event_ids[0], event_ids[0] + EVENTS_PER_TRANSACTION))
    for _, committed, earlier in transactions:
        for began, _, later in transactions:
            if committed < began:
                assert max(earlier) < min(later)


def test_one_sequencer_leads_and_a_standby_takes_over_without_a_gap(market: Market, sequencer: Sequencer) -> None:
    customer_pk = Customer.objects.get(customer_id="000002").pk

    # given a second sequencer started while the fixture's leads
    standby = Sequencer()
    thread = threading.Thread(target=standby.run, daemon=True)
    thread.start()
    try:
        _record(customer_pk, "first")
        wait_for(all_numbered, "the leader numbering")
        assert sequencer.leading
        assert not standby.leading

        # when the leader stops, then the standby leads, and numbers on from where it ended
        sequencer.stop.set()
        wake()
        wait_for(lambda: standby.leading, "the standby leading")
        _record(customer_pk, "second")
        wait_for(all_numbered, "the new leader numbering")
        ids = [event_id or 0 for event_id in StreamEvent.objects.order_by("id").values_list("event_id", flat=True)]
        assert ids == list(range(ids[0], ids[0] + 4))
    finally:
        standby.stop.set()
        wake()
        thread.join(JOIN_SECONDS)


def test_the_sequencer_publishes_each_group_a_chain_of_ranges(market: Market, sequencer: Sequencer) -> None:
    customers = {code: Customer.objects.get(customer_id=code).pk for code in ("000002", "000003")}
    layer: Any = get_channel_layer()

    async def run() -> list[dict[str, Any]]:
        channel = await layer.new_channel()
        await layer.group_add(streaming.customer_group("000002"), channel)
        try:
            for code in ("000002", "000003", "000002", "000003", "000002"):
                await asyncio.to_thread(_record, customers[code], code)
            messages: list[dict[str, Any]] = []
            while sum(len(m["events"]) for m in messages) < 6:
                messages.append(await asyncio.wait_for(layer.receive(channel), 10))  # a guard, not a timing
            return messages
        finally:
            await layer.group_discard(streaming.customer_group("000002"), channel)

    messages = async_to_sync(run)()

    # then the customer's messages carry only its events, each range starting where the last ended
    for previous, message in itertools.pairwise(messages):
        assert message["after"] == previous["upto"]
    own = StreamEvent.objects.filter(customer_id=customers["000002"]).order_by("event_id")
    sent = [json.loads(text) for m in messages for _, text in m["events"]]
    assert [p["eventId"] for p in sent] == list(own.values_list("event_id", flat=True))
    assert [event_id for m in messages for event_id, _ in m["events"]] == [p["eventId"] for p in sent]
    assert all(m["after"] < event_id <= m["upto"] for m in messages for event_id, _ in m["events"])
    assert {p["order"]["note"] for p in sent} == {f"000002-{n}" for n in range(2)}


def test_the_pipelined_publisher_reaches_the_layers_subscribers_in_order() -> None:
    # The sequencer publishes with its own Redis client (GroupPublisher), as the pub/sub layer would:
    # under these settings it must be the one in use, and what it sends must arrive through the layer.
    layer: Any = get_channel_layer()
    publisher = GroupPublisher.for_layer(layer)
    assert publisher is not None
    group = streaming.customer_group("publisher-test")
    sent = [
        (group, {"type": streaming.MESSAGE_TYPE, "after": n, "upto": n + 1, "events": [[n + 1, "{}"]]})
        for n in range(3)
    ]

    async def run() -> list[dict[str, Any]]:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            await asyncio.to_thread(publisher.send, sent)
            return [await asyncio.wait_for(layer.receive(channel), 10) for _ in sent]  # a guard, not a timing
        finally:
            await layer.group_discard(group, channel)

    received = async_to_sync(run)()
    assert [message["after"] for message in received] == [0, 1, 2]
    assert [message["events"] for message in received] == [[[1, "{}"]], [[2, "{}"]], [[3, "{}"]]]


def _record(customer_pk: int, note: str) -> None:
    try:
        with transaction.atomic():
            outbox.events_record([(customer_pk, {"type": "order", "order": {"note": f"{note}-{n}"}}) for n in range(2)])
        wake()
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()


def test_an_event_is_numbered_once_and_never_changed(market: Market) -> None:
    # given a recorded event, numbered by a pass
    customer = Customer.objects.get(customer_id="000002")
    with transaction.atomic():
        outbox.events_record([(customer.pk, {"type": "order", "order": {"orderId": "x"}})])
    numbered = outbox.events_sequence()
    (event_id,) = [event_id for _, event_id, _ in numbered.events]
    event = StreamEvent.objects.get(event_id=event_id)

    # then the database refuses to number it again, or to change what it says
    for change in ({"event_id": event_id + 1000}, {"payload": {"type": "order", "order": {"orderId": "y"}}}):
        with pytest.raises(Exception, match="numbered once and never changed"), transaction.atomic():
            StreamEvent.objects.filter(pk=event.pk).update(**change)
    event.refresh_from_db()
    assert (event.event_id, event.payload["order"]["orderId"]) == (event_id, "x")


def test_wake_ready_starts_the_waking_thread_and_its_wakes_reach_redis() -> None:
    # A process's warm-up opens what its first commit of events would otherwise open (broker/warmup.py).
    from orders import sequencer

    client = sequencer._redis()
    client.delete(sequencer.wake_key())

    sequencer.wake_ready()

    assert any(thread.name == "stream-wake" and thread.is_alive() for thread in threading.enumerate())
    wake()
    wait_for(lambda: client.llen(sequencer.wake_key()) == 1, "the wake in Redis")
    client.delete(sequencer.wake_key())


def _index_entries_read(index: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # this backend's counts, visible to the next read
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = %s", [index])
        (read,) = cursor.fetchone()
    return int(read)


def test_a_pass_does_not_read_the_entries_earlier_passes_numbered_again(market: Market) -> None:
    # given 300 events numbered by earlier passes: 300 dead entries in the index of rows without an id
    customer = Customer.objects.order_by("pk").first()
    assert customer is not None
    outbox.events_record([(customer.pk, {"type": "order", "n": n}) for n in range(300)])
    while outbox.events_sequence().events:
        pass
    before = _index_entries_read("streamevent_unsequenced")

    # when the sequencer passes ten more times with nothing new
    for _ in range(10):
        assert not outbox.events_sequence().events

    # then the dead entries were read about once in all (a bitmap scan reads every one at every pass:
    # 3,000), not once per pass
    assert _index_entries_read("streamevent_unsequenced") - before < 600
