"""The order state machine: the one helper every status change of an order or a child goes through."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from orders.models import (
    CHILD_TRANSITIONS,
    ORDER_TRANSITIONS,
    ChildOrder,
    ChildStatus,
    EventKind,
    Order,
    OrderEvent,
    OrderStatus,
)

Actor = AbstractBaseUser | AnonymousUser | None

# Only a trade correction may take a finished order or child back from Filled (a bust or a lower
# quantity): it then ends Cancelled.
ORDER_CORRECTIONS: dict[str, frozenset[str]] = {OrderStatus.FILLED: frozenset({OrderStatus.CANCELLED})}
CHILD_CORRECTIONS: dict[str, frozenset[str]] = {ChildStatus.FILLED: frozenset({ChildStatus.CANCELLED})}


class TransitionRefused(Exception):
    """A status change the pipeline does not allow: a programming error, never user input."""


def actor_name(actor: Actor | str) -> str:
    if isinstance(actor, str):
        return actor
    if actor is None or not actor.is_authenticated:
        return "system"
    return actor.get_username()


def transition(
    subject: Order | ChildOrder,
    to: str,
    *,
    actor: Actor | str,
    events: list[OrderEvent],
    correction: bool = False,
    **detail: Any,
) -> bool:
    """Move the (locked) order or child to `to` and append its event; the same status again is a no-op
    (returns False). Raises TransitionRefused for a move the tables in orders.models do not allow
    (`correction`: the corrections' own table instead, the only way back from Filled)."""
    if subject.status == to:
        return False
    if isinstance(subject, Order):
        table = ORDER_CORRECTIONS if correction else ORDER_TRANSITIONS
        name, kind = f"order {subject.order_id}", EventKind.STATUS
        event = OrderEvent(order=subject)
    else:
        table = CHILD_CORRECTIONS if correction else CHILD_TRANSITIONS
        name, kind = f"child {subject.pk}", EventKind.CHILD_STATUS
        event = OrderEvent(order_id=subject.parent_id, child=subject)
    if to not in table.get(subject.status, frozenset()):
        raise TransitionRefused(f"{name}: {subject.status} -> {to} is not allowed")
    event.kind, event.from_status, event.to_status = kind, subject.status, to
    event.actor, event.detail = actor_name(actor), detail
    events.append(event)
    subject.status = to
    return True
