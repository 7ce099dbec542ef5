"""The fill stream's messages on the Channels layer: its groups, and how the sequencer
(orders/sequencer.py) frames the events of one numbering pass for them.

Clients' sockets are in their customer's group, staff's in the staff group. One channel-layer message
carries a group's events of one pass, in eventId order, as `[eventId, JSON text]` pairs (the consumer
sends the text as it is), with the range of ids it accounts for:
`after` and `upto` say that the group has no event numbered in (`after`, `upto`] other than the
ones carried. The sequencer is the only publisher, so a group's messages arrive in order and each
starts where the previous one ended; a subscriber that finds `after` beyond what it has seen knows a
message was lost and reads the table instead (orders/consumers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STAFF_GROUP = "fills.staff"
MESSAGE_TYPE = "fills.message"  # dispatched to FillsConsumer.fills_message
# Payloads per channel-layer message: a subscriber's channel holds at most the layer's capacity of
# messages, and one message must stay a modest Redis value.
EVENT_PAYLOADS = 100


def customer_group(customer_id: str) -> str:
    return f"fills.customer.{customer_id}"


def frame(
    events: Sequence[tuple[str, int, str]], *, upto: int, sent_upto: dict[str, int], start: int
) -> list[tuple[str, dict[str, Any]]]:
    """The (group, message) pairs that carry one pass's events, numbered up to `upto`, each (customer
    code, eventId, JSON text), in order: every customer's group and the staff group.

    `sent_upto` maps a group to the `upto` of the last message sent to it (updated here); a group not
    in it has had nothing since `start`, the last id before this publisher began."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for customer_code, event_id, text in events:
        groups.setdefault(customer_group(customer_code), []).append((event_id, text))
        groups.setdefault(STAFF_GROUP, []).append((event_id, text))
    messages: list[tuple[str, dict[str, Any]]] = []
    for group, carried in groups.items():
        after = sent_upto.get(group, start)
        for first in range(0, len(carried), EVENT_PAYLOADS):
            chunk = carried[first : first + EVENT_PAYLOADS]
            # The last chunk accounts for the rest of the pass too (other customers' ids).
            chunk_upto = upto if first + EVENT_PAYLOADS >= len(carried) else chunk[-1][0]
            messages.append((group, {"type": MESSAGE_TYPE, "after": after, "upto": chunk_upto, "events": chunk}))
            after = chunk_upto
        sent_upto[group] = upto
    return messages
