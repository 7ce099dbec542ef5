"""Broadcasting fills and order updates to `/ws/fills/` subscribers through the Channels layer.

Called only from `transaction.on_commit` callbacks, so a subscriber never hears of a fill that was rolled
back. Clients are in their customer's group, staff in the staff group.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

STAFF_GROUP = "fills.staff"
MESSAGE_TYPE = "fills.message"  # dispatched to FillsConsumer.fills_message


def customer_group(customer_id: str) -> str:
    return f"fills.customer.{customer_id}"


def publish(messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Send each (customer_id, payload) to that customer's group and to staff, in order."""
    if not messages:
        return
    layer = get_channel_layer()
    if layer is None:
        return

    async def send_all() -> None:
        for customer_id, payload in messages:
            event = {"type": MESSAGE_TYPE, "payload": payload}
            await layer.group_send(customer_group(customer_id), event)
            await layer.group_send(STAFF_GROUP, event)

    try:
        async_to_sync(send_all)()
    except Exception:  # the stream is best effort; the trade is already committed and queryable
        logger.exception("could not publish %d fill stream messages", len(messages))
