"""The resumable fill stream: events written with their change and numbered by the sequencer, `?since=`
replays (only what the caller may see, in order), a reset when the events were pruned, a lost publish
sent at the next heartbeat, a lost message found in the table, a lost wake still delivered. The
consumer and the sequencer run in-process over the real Redis channel layer and Postgres;
tests/orders/test_sequencer.py proves the numbering under concurrent writers, and
tests/integration/test_stream_resume.py does it all on the real stack across a disconnect mid-burst."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from broker import services as broker_services
from broker.models import Customer
from orders import outbox, streaming
from orders.models import StreamEvent
from orders.sequencer import Sequencer
from orders.services.effects import Effects
from tests.conftest import Market, drive, place, staff_client
from tests.stack import wait_for
from tests.streams import all_numbered

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer reads on its own connections


def _staff_token() -> str:
    staff_client()  # mints the staff token of user "desk"
    from rest_framework.authtoken.models import Token

    return Token.objects.get(user__username="desk").key


async def _collect(
    token: str,
    *,
    since: int | None = None,
    idle: float = 1.0,
    done: Callable[[list[Any]], bool] | None = None,
    ready: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Messages until `done` says so, or (without `done`) until none came for `idle` seconds; 20 s at most."""
    from broker.asgi import application

    query = f"token={token}" + (f"&since={since}" if since is not None else "")
    communicator = WebsocketCommunicator(application, f"/ws/fills/?{query}")
    connected, _ = await communicator.connect()
    assert connected
    messages: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline and not (done and done(messages)):
        # receive_nothing waits without ending the application (receive_output's timeout would).
        if await communicator.receive_nothing(timeout=idle if done is None else 0.1, interval=0.02):
            if done is None:
                break
            continue
        message = await communicator.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            break
        messages.append(json.loads(message["text"]))
        if ready is not None and messages[-1]["type"] == "subscribed":
            ready.set()  # joined: what commits from now on reaches this socket
    await communicator.disconnect()
    return messages


def _trading(market: Market) -> None:
    """Orders and fills for two customers: 000002 and 000003."""
    for customer in ("000002", "000003", "000002"):
        drive(place(customer_id=customer, direction="Buy", type="Limit", quantity=100, price="260.00"))


def _stream(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message for message in messages if "eventId" in message and message["type"] != "heartbeat"]


def test_every_message_is_an_event_of_its_transaction_numbered_in_commit_order(
    market: Market, sequencer: Sequencer
) -> None:
    # when orders are placed and filled, one transaction after another
    _trading(market)

    # then each order and fill message is an event of the table, numbered by the sequencer in the
    # order the transactions committed (here, the order they were written), with no gap
    wait_for(all_numbered, "every event numbered")
    events = list(StreamEvent.objects.order_by("id").values_list("event_id", "kind", "payload"))
    assert {kind for _, kind, _ in events} >= {"order", "fill"}
    first = events[0][0] or 0
    assert [event_id for event_id, _, _ in events] == list(range(first, first + len(events)))
    assert all("eventId" not in payload for _, _, payload in events)  # the id is the row's own

    # and a transaction that rolls back leaves no event behind
    before = StreamEvent.objects.count()
    order = place(customer_id="000002", direction="Buy", type="Limit", quantity=1, price="1.00")

    def record_then_fail() -> None:
        with transaction.atomic():
            Effects(orders={order.pk: order}).record()
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        record_then_fail()
    assert StreamEvent.objects.count() == before + 1  # the placement's own event only


def test_a_replay_holds_what_the_caller_may_see_in_order(market: Market, sequencer: Sequencer) -> None:
    # given orders and fills of two customers
    _trading(market)
    wait_for(all_numbered, "every event numbered")
    own = broker_services.api_token_for_customer(customer_id="000002").key
    customer = Customer.objects.get(customer_id="000002")

    # when the client resumes from the beginning
    replay = _stream(asyncio.run(_collect(own, since=0)))

    # then it gets exactly its own customer's events, in id order, and nothing of 000003
    expected = list(StreamEvent.objects.filter(customer=customer).values_list("event_id", flat=True))
    assert [message["eventId"] for message in replay] == expected
    assert {(message.get("trade") or message.get("order") or {}).get("customerId") for message in replay} == {"000002"}
    # and staff resuming from the middle get every customer's events after it, in order
    middle = expected[1]
    staff = _stream(asyncio.run(_collect(_staff_token(), since=middle)))
    assert [message["eventId"] for message in staff] == list(
        StreamEvent.objects.filter(event_id__gt=middle).order_by("event_id").values_list("event_id", flat=True)
    )


def test_a_since_older_than_what_is_kept_gets_a_reset_first(market: Market, sequencer: Sequencer) -> None:
    # given events of which the oldest were pruned
    _trading(market)
    wait_for(all_numbered, "every event numbered")
    ids = list(StreamEvent.objects.order_by("event_id").values_list("event_id", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        # Events are never changed (a trigger): age these three behind it, as time would.
        cursor.execute("SET LOCAL session_replication_role = replica")
        StreamEvent.objects.filter(event_id__in=ids[:3]).update(created_at=timezone.now() - timedelta(days=3))
    assert outbox.events_prune() == 3

    # when staff resume from before them
    messages = asyncio.run(_collect(_staff_token(), since=ids[0]))

    # then a reset says where the kept events begin, and the kept ones follow
    assert messages[1] == {"type": "reset", "oldestEventId": ids[3]}
    assert [message["eventId"] for message in _stream(messages)] == ids[3:]
    # and a since that is no eventId is refused, saying why
    assert asyncio.run(_refusal(_staff_token(), "since=-1")) == (
        {"type": "error", "detail": "since must be an eventId: a whole number >= 0."},
        4400,
    )


async def _refusal(token: str, query: str) -> tuple[dict[str, Any], int | None]:
    from broker.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/fills/?token={token}&{query}")
    connected, _ = await communicator.connect()
    assert connected
    error = json.loads((await communicator.receive_output(timeout=5))["text"])
    closed = await communicator.receive_output(timeout=5)
    # The client's side of the close: the consumer ends, rather than being cancelled by asyncio.run mid
    # channel-layer read (which could hang the loop's shutdown).
    await communicator.disconnect()
    return error, closed.get("code")


@override_settings(STREAM_HEARTBEAT_SECONDS=0.3)
def test_a_publish_that_never_came_is_sent_at_the_next_heartbeat(market: Market) -> None:
    customer = Customer.objects.get(customer_id="000002")
    token = _staff_token()

    async def scenario() -> list[dict[str, Any]]:
        subscribed = asyncio.Event()
        listener = asyncio.create_task(_collect(token, done=_heartbeat_after_two_events, ready=subscribed))
        await subscribed.wait()  # live from the newest event
        # events committed and numbered whose publish is lost: never sent to the channel layer
        await asyncio.to_thread(_record_without_publishing, customer.pk, 2)
        return await listener

    messages = asyncio.run(scenario())

    events = list(StreamEvent.objects.order_by("event_id").values_list("event_id", flat=True))[-2:]
    assert [message["eventId"] for message in _stream(messages)] == events
    heartbeats = [message for message in messages if message["type"] == "heartbeat"]
    assert heartbeats
    assert heartbeats[-1]["eventId"] == events[-1]


def _heartbeat_after_two_events(messages: list[dict[str, Any]]) -> bool:
    events = [index for index, message in enumerate(messages) if message["type"] == "order"]
    return len(events) == 2 and any(message["type"] == "heartbeat" for message in messages[events[-1] :])


def _record_without_publishing(customer_pk: int, count: int) -> list[dict[str, Any]]:
    """Events committed and numbered (as the sequencer does), never published; with their eventIds."""
    payloads = [{"type": "order", "order": {"customerId": "000002", "note": n}} for n in range(count)]
    try:
        with transaction.atomic():
            outbox.events_record([(customer_pk, payload) for payload in payloads])
        return [json.loads(text) for _, _, text in outbox.events_sequence().events]
    finally:
        connection.close()  # this worker thread's own connection, or the test database stays in use


def test_a_lost_message_is_read_from_the_table_and_nothing_goes_out_twice(market: Market) -> None:
    customer = Customer.objects.get(customer_id="000002")
    token = _staff_token()
    layer = get_channel_layer()

    async def scenario() -> list[dict[str, Any]]:
        subscribed = asyncio.Event()
        listener = asyncio.create_task(_collect(token, idle=1.5, ready=subscribed))
        await subscribed.wait()
        first, second, third = await asyncio.to_thread(_record_without_publishing, customer.pk, 3)
        before = first["eventId"] - 1

        def message(after: int, payloads: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "type": streaming.MESSAGE_TYPE,
                "after": after,
                "upto": payloads[-1]["eventId"],
                "events": [[payload["eventId"], json.dumps(payload)] for payload in payloads],
            }

        # the message carrying the first event is lost; the second's starts beyond what was seen;
        # then the second and third come again, and a message of no known range
        for event in (
            message(first["eventId"], [second]),
            message(before, [first, second]),
            message(second["eventId"], [third]),
            {"type": streaming.MESSAGE_TYPE, "events": [[third["eventId"], json.dumps(third)]]},
        ):
            await layer.group_send(streaming.STAFF_GROUP, event)
        return await listener

    messages = _stream(asyncio.run(scenario()))

    # then each event went out once, in order
    events = list(StreamEvent.objects.order_by("event_id").values_list("event_id", flat=True))[-3:]
    assert [message["eventId"] for message in messages] == events


@override_settings(STREAM_SEQUENCER_POLL_SECONDS=0.3)
def test_events_whose_wake_was_lost_are_still_delivered(market: Market, sequencer: Sequencer) -> None:
    customer = Customer.objects.get(customer_id="000002")
    token = _staff_token()

    async def scenario() -> list[dict[str, Any]]:
        subscribed = asyncio.Event()
        listener = asyncio.create_task(
            _collect(token, done=lambda messages: len(_stream(messages)) == 2, ready=subscribed)
        )
        await subscribed.wait()
        # committed, and the sequencer never woken for them
        await asyncio.to_thread(_record_only, customer.pk, 2)
        return await listener

    messages = _stream(asyncio.run(scenario()))

    assert [message["order"]["note"] for message in messages] == [0, 1]
    assert [message["eventId"] for message in messages] == list(
        StreamEvent.objects.order_by("event_id").values_list("event_id", flat=True)
    )[-2:]


def _record_only(customer_pk: int, count: int) -> None:
    payloads = [{"type": "order", "order": {"customerId": "000002", "note": n}} for n in range(count)]
    try:
        with transaction.atomic():
            outbox.events_record([(customer_pk, payload) for payload in payloads])
    finally:
        connection.close()
