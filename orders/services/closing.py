"""Closing: cancel an order, or expire it at the market close: take what is open off the venues, finish it."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from broker.exceptions import Conflict
from broker.transactions import retry_on_lock_conflict
from orders.models import (
    FINAL_CHILD_STATUSES,
    ChildOrder,
    ChildStatus,
    Order,
    OrderEvent,
    OrderStatus,
    TimeInForce,
)
from orders.services.effects import Effects
from orders.services.transitions import Actor, actor_name, transition
from pools import services as pool_services
from pools.models import Pool
from settlement import services as settlement_services

logger = logging.getLogger(__name__)


@retry_on_lock_conflict()
def order_cancel(*, order_id: int, actor: Actor | str) -> Order:
    """Cancel whatever of the order is still open; replaying a cancel is a no-op.

    Locks as `_close_out`; runs again after a deadlock or serialization failure (then Busy, a 503).
    """
    return _close_out(order_id=order_id, actor=actor, to=OrderStatus.CANCELLED, child_to=ChildStatus.CANCELLED)


@retry_on_lock_conflict()
def order_expire(*, order_id: int) -> Order:
    """Expire a Day order at the market close: like a cancel, by the exchange, status Expired.

    Locks as `_close_out`; runs again after a deadlock or serialization failure (then Busy).
    """
    return _close_out(order_id=order_id, actor="market close", to=OrderStatus.EXPIRED, child_to=ChildStatus.EXPIRED)


def _close_out(*, order_id: int, actor: Actor | str, to: str, child_to: str) -> Order:
    """Take everything still open of the order off the venues and finish it with status `to`.

    Locks (FOR NO KEY UPDATE, in the global order of the module docstring): every book of the ticker
    by pool id (this is rare; matching takes the same locks in the same order), then the order, then
    its open children by id, then updates its reservation. Replaying it is a no-op.
    """
    ticker_id = Order.objects.values_list("ticker_id", flat=True).get(pk=order_id)
    pool_services.books_ensure(ticker_id=ticker_id)
    with transaction.atomic():
        books = {}
        for pool_id in sorted(Pool.objects.values_list("pk", flat=True)):
            book = pool_services.book_lock(pool_id=pool_id, ticker_id=ticker_id)
            assert book is not None  # it waits for the lock
            books[pool_id] = book
        order = (
            Order.objects.select_for_update(of=("self",), no_key=True)
            .select_related("customer", "ticker")
            .get(pk=order_id)
        )
        if order.status == to:
            return order
        if order.is_final:
            verb = "cancel" if to == OrderStatus.CANCELLED else "expire"
            raise Conflict(f"Order is {order.status}; nothing left to {verb}.", field="status")
        children = list(
            ChildOrder.objects.select_for_update(of=("self",), no_key=True)
            .filter(parent=order)
            .exclude(status__in=FINAL_CHILD_STATUSES)
            .order_by("pk")
        )
        events: list[OrderEvent] = []
        now = timezone.now()
        for child in children:
            removed = pool_services.book_cancel(book=books[child.pool_id], client_ref=child.pk) if child.pool_id else 0
            transition(child, child_to, actor=actor, events=events, removedFromBook=removed)
            child.updated_at = now
        ChildOrder.objects.bulk_update(children, ["status", "updated_at"])
        transition(order, to, actor=actor, events=events, requestedBy=actor_name(actor))
        order.save(update_fields=["status", "updated_at"])
        settlement_services.reservation_close(order_ref=order.pk)
        OrderEvent.objects.bulk_create(events)
        Effects(orders={order.pk: order}).on_commit()
    return order


def orders_expire_day(*, now: datetime | None = None) -> int:
    """Expire every open Day order entered before the last market close (calendar mode only).

    Orders still New (held unrouted by a ticker, customer or every-venue halt) expire too, releasing
    their reservation. Each order is expired in its own transaction, oldest first; one that fails is
    logged and left for the next run, and never stops the others from expiring.
    With MARKET_CALENDAR empty the simulated market is open around the clock and nothing expires.
    """
    if not settings.MARKET_CALENDAR:
        return 0
    now = now or timezone.now()
    last_close = market_last_close(now=now)
    due = Order.objects.filter(
        time_in_force=TimeInForce.DAY,
        status__in=(OrderStatus.NEW, OrderStatus.ROUTED, OrderStatus.PARTIALLY_FILLED),
        created_at__lt=last_close,
    ).order_by("pk")
    expired, after = 0, 0
    while batch := list(due.filter(pk__gt=after).values_list("pk", "order_id")[:1000]):
        for order_id, public_id in batch:
            try:
                order_expire(order_id=order_id)
                expired += 1
            except Conflict:
                pass  # it filled or was cancelled meanwhile: nothing to expire
            except Exception:
                # Keep going: a failure on one order must not keep every order behind it open (and
                # able to fill) into the next session. The next run tries it again.
                logger.exception("could not expire Day order %s; it stays open until the next run", public_id)
        after = batch[-1][0]
    return expired


def market_last_close(*, now: datetime) -> datetime:
    """The most recent session close of MARKET_CALENDAR at or before `now` (UTC)."""
    import exchange_calendars
    import pandas

    calendar = exchange_calendars.get_calendar(settings.MARKET_CALENDAR)
    moment = pandas.Timestamp(now).tz_convert("UTC")
    day = moment.tz_localize(None).normalize()
    # Closes (UTC) of the sessions of the last two weeks, indexed by session date; holidays have none.
    closes = calendar.closes[day - pandas.Timedelta(days=14) : day]
    return closes[closes <= moment].iloc[-1].to_pydatetime()
