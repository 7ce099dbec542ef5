"""The fill stream's messages on the Channels layer: its groups, and how the sequencer
(orders/sequencer.py) frames the events of one numbering pass for them.

Clients' sockets are in their customer's group, staff's in the staff group. One channel-layer message
carries a group's events of one pass, in eventId order, with the range of ids it accounts for:
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
    events: Sequence[tuple[str, dict[str, Any]]], *, upto: int, sent_upto: dict[str, int], start: int
) -> list[tuple[str, dict[str, Any]]]:
    """The (group, message) pairs that carry one pass's events, numbered up to `upto`, each (customer
    code, payload with eventId), in order: every customer's group and the staff group.

    `sent_upto` maps a group to the `upto` of the last message sent to it (updated here); a group not
    in it has had nothing since `start`, the last id before this publisher began."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for customer_code, payload in events:
        groups.setdefault(customer_group(customer_code), []).append(payload)
        groups.setdefault(STAFF_GROUP, []).append(payload)
    messages: list[tuple[str, dict[str, Any]]] = []
    for group, payloads in groups.items():
        after = sent_upto.get(group, start)
        for first in range(0, len(payloads), EVENT_PAYLOADS):
            chunk = payloads[first : first + EVENT_PAYLOADS]
            # The last chunk accounts for the rest of the pass too (other customers' ids).
            chunk_upto = upto if first + EVENT_PAYLOADS >= len(payloads) else int(chunk[-1]["eventId"])
            messages.append((group, {"type": MESSAGE_TYPE, "after": after, "upto": chunk_upto, "payloads": chunk}))
            after = chunk_upto
        sent_upto[group] = upto
    return messages
