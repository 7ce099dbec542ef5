"""`/ws/fills/`: the live fill stream. Clients get their own customer's fills; staff get every fill when
they may see the blotter (orders.view_blotter), and are refused with 4403 otherwise.

Every fill, order and settled message carries `eventId` (numbered after commit by the stream's
sequencer, orders/sequencer.py, in commit order), and a subscriber gets them in eventId order, each once.
The consumer keeps `position`: every event it may see numbered up to there has been sent.

- `?since=N` first replays from the event table everything after N the caller may see, then goes live;
  a `since` older than what is kept gets `{"type": "reset", "oldestEventId": M}` first.
- Live messages come from the sequencer alone, each accounting for a range of ids (`after`, `upto`]
  (orders/streaming.py). One that starts where `position` is, or before it, is sent as it is (less
  what was sent already); one that starts beyond it means a message was lost, and the consumer reads
  the table instead, which holds everything numbered before it was published.
- Every `STREAM_HEARTBEAT_SECONDS` the consumer reads the table after `position` (what a lost publish
  left behind), then sends `{"type": "heartbeat", "eventId": <last>}`, `<last>` being the last id it
  sent this caller; an idle socket is never closed on the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from broker import access
from broker.exceptions import Forbidden
from orders import outbox, roles, streaming

UNAUTHENTICATED = 4401
FORBIDDEN = 4403
BAD_REQUEST = 4400


class FillsConsumer(AsyncJsonWebsocketConsumer):
    groups: list[str] = []

    async def connect(self) -> None:
        # Refusals accept first and then close with a 44xx code: a bare handshake 403 would not tell an
        # API client whether its token was wrong (4401) or not bound to a customer (4403).
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=UNAUTHENTICATED)
            return
        since_text = parse_qs(self.scope.get("query_string", b"").decode()).get("since", [None])[0]
        since = int(since_text) if since_text is not None and since_text.isdigit() else None
        if since_text is not None and (since is None or since > 2**62):
            await self.accept()
            await self.send_json({"type": "error", "detail": "since must be an eventId: a whole number >= 0."})
            await self.close(code=BAD_REQUEST)
            return
        found = await self._scope_for(user)
        if found is None:
            await self.accept()
            await self.close(code=FORBIDDEN)
            return
        group, self.customer_pk = found
        self.subscribed = group
        self.last_sent = 0  # the last eventId sent to this caller (what heartbeats report)
        self.position = 0
        # The heartbeat's catch-up and the live messages both send: one at a time, or an event read
        # by one could go out again from the other.
        self.sending = asyncio.Lock()
        if since is None:
            # Live from here: what was numbered before joining is not this socket's to send.
            self.position = await database_sync_to_async(outbox.last_event_id)(customer_pk=None)
            self.last_sent = await database_sync_to_async(outbox.last_event_id)(customer_pk=self.customer_pk)
        # Joined before the replay reads the table: whatever is published from now on is either read
        # below or queued for this consumer, which handles it after `connect` (messages are handled in
        # turn). A message published while joining may be lost; the next one shows the gap.
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "subscribed", "scope": "all" if group == streaming.STAFF_GROUP else group})
        if since is not None:
            oldest = await database_sync_to_async(outbox.oldest_kept_id)()
            if oldest is not None and since < oldest - 1:
                await self.send_json({"type": "reset", "oldestEventId": oldest})
            self.position = self.last_sent = since
            await self._catch_up()
        self.heartbeat = asyncio.create_task(self._heartbeats())

    async def disconnect(self, code: int) -> None:
        if task := getattr(self, "heartbeat", None):
            task.cancel()
        if group := getattr(self, "subscribed", None):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The stream is one-way; answer pings so clients can check liveness.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler, in a thread hop of its own:
        # on a busy stream that was a hop per live message on the web's event loop. A live message only
        # reads the table through `_catch_up`, whose database_sync_to_async closes them itself.
        if message.get("type") == streaming.MESSAGE_TYPE:
            await self.fills_message(message)
        else:
            await super().dispatch(message)

    async def fills_message(self, event: dict[str, Any]) -> None:
        # One message carries the group's events of one sequencer pass, in order (orders.streaming).
        async with self.sending:
            after, upto = event.get("after"), event.get("upto")
            if not isinstance(after, int) or not isinstance(upto, int) or after > self.position:
                # A message before it was lost (or it is of no known range): the table has it all.
                await self._catch_up()
                return
            for event_id, text in event["events"]:
                if event_id > self.position:
                    await self.send(text_data=text)
                    self.last_sent = self.position = event_id
            self.position = max(self.position, upto)

    async def _catch_up(self) -> None:
        """Send, in order, what the table holds after `position`."""
        # Read first: every event numbered up to it is in what the reads below return.
        top = await database_sync_to_async(outbox.last_event_id)(customer_pk=None)
        while True:
            events = await database_sync_to_async(outbox.events_after)(
                after=self.position, customer_pk=self.customer_pk
            )
            for payload in events:
                await self.send_json(payload)
                self.last_sent = self.position = payload["eventId"]
            if len(events) < outbox.REPLAY_BATCH:
                self.position = max(self.position, top)
                return

    async def _heartbeats(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(settings.STREAM_HEARTBEAT_SECONDS)
                async with self.sending:
                    await self._catch_up()
                    await self.send_json({"type": "heartbeat", "eventId": self.last_sent})

    @database_sync_to_async
    def _scope_for(self, user: Any) -> tuple[str, int | None] | None:
        """Staff who may see the blotter: every fill (customer None); a client: its own customer's.
        None: refused."""
        try:
            customer = access.customer_scope(user=user, permission=roles.VIEW_BLOTTER)
        except Forbidden:
            return None
        if customer is None:
            return streaming.STAFF_GROUP, None
        return streaming.customer_group(customer.customer_id), customer.pk
