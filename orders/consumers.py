"""`/ws/fills/`: the live fill stream. Clients get their own customer's fills; staff get every fill when
they may see the blotter (orders.view_blotter), and are refused with 4403 otherwise."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from broker import access
from broker.exceptions import Forbidden
from orders import roles, streaming

UNAUTHENTICATED = 4401
FORBIDDEN = 4403


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
        group = await self._group_for(user)
        if group is None:
            await self.accept()
            await self.close(code=FORBIDDEN)
            return
        self.subscribed = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "subscribed", "scope": "all" if group == streaming.STAFF_GROUP else group})

    async def disconnect(self, code: int) -> None:
        if group := getattr(self, "subscribed", None):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The stream is one-way; answer pings so clients can check liveness.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def fills_message(self, event: dict[str, Any]) -> None:
        # One event carries the group's messages of one publishing batch (orders.streaming), in order.
        for payload in event["payloads"]:
            await self.send_json(payload)

    @database_sync_to_async
    def _group_for(self, user: Any) -> str | None:
        """Every fill for staff who may see the blotter, a client's own customer's fills; None: refused."""
        try:
            customer = access.customer_scope(user=user, permission=roles.VIEW_BLOTTER)
        except Forbidden:
            return None
        return streaming.STAFF_GROUP if customer is None else streaming.customer_group(customer.customer_id)
