"""Order writes: place, route, match at a venue, cancel, settle, correct, sweep. The order state machine lives here.

Lock order: every write path (here, in `pools.services` and in `settlement.services`) takes its row locks
in this one global order, skipping what it does not need, so no two transactions wait for each other
in a cycle:
    customer (placement only)
      -> venue books (by pool id)
      -> parent orders (by id)
      -> child orders (by id)
      -> trades (by id)
      -> venue executions (corrections only)
      -> ledger: postings, accounts (created in key order; otherwise only referenced, never locked)
      -> reservations (by order id)
Settlement starts at the trade (it locks no order), placement at the customer, matching at its book.

Lock strength: every row lock is FOR NO KEY UPDATE (`select_for_update(no_key=True, of=("self",))`),
never FOR UPDATE. Our foreign keys are DEFERRABLE INITIALLY DEFERRED, so every row a transaction
inserts takes FOR KEY SHARE on the rows it references (customer, ticker, pool, order, child, execution)
at COMMIT, that is out of the order above. FOR KEY SHARE conflicts only with FOR UPDATE (and with
deleting or re-keying a row, which no path does), so with no-key locks those checks never wait. With
FOR UPDATE they did: settlement held a trade and its order's reservation and, at commit, checked its
event's order and child, which matching (or a cancel, or a correction) held while it waited for that
reservation or trade; Postgres killed one of them (issue 10, item 4).

A book row lock (`pools.services.book_lock`) is the one-matcher-per-(pool, ticker) guarantee. A child is
only ever changed while the book of its current venue is locked (matching, re-routing, cancelling) or,
once its order is finished, by a correction holding that order; a parent's fill totals only while the
parent row is locked. Cancels and corrections also run again after a deadlock or serialization failure
(`broker.transactions.retry_on_lock_conflict`), a last line of defence that answers 503, never 500.

Side effects (enqueueing tasks, streaming fills) run only after commit, through `_Effects`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from broker.exceptions import ApplicationError, Conflict, NotFound
from broker.marketdata import services as marketdata_services
from broker.models import Customer, Ticker
from broker.transactions import retry_on_lock_conflict
from orders import kill_switch, routing
from orders.models import (
    CHILD_TRANSITIONS,
    FINAL_CHILD_STATUSES,
    ORDER_TRANSITIONS,
    ChildOrder,
    ChildStatus,
    LiquidityRole,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    TimeInForce,
    Trade,
    TradeVersion,
)
from orders.validation import CORRECTION_REASON_TEXT, OrderRequest
from pools import selectors as pool_selectors
from pools import services as pool_services
from pools.liquidity import round_to_tick
from pools.models import Book, BookOrder, BookOrderStatus, Pool, PoolKind
from settlement import services as settlement_services

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None


# Only a trade correction may take a finished order back from Filled (a bust or a lower quantity).
ORDER_CORRECTIONS: dict[str, frozenset[str]] = {OrderStatus.FILLED: frozenset({OrderStatus.CANCELLED})}
CHILD_CORRECTIONS: dict[str, frozenset[str]] = {ChildStatus.FILLED: frozenset({ChildStatus.CANCELLED})}


class TransitionRefused(Exception):
    """A status change the pipeline does not allow: a programming error, never user input."""


# --- after-commit effects -------------------------------------------------------------------------


@dataclass
class _Effects:
    """Everything a transaction wants done once it has committed."""

    routes: list[int] = field(default_factory=list)
    matches: list[tuple[int, int, str]] = field(default_factory=list)  # (child id, attempt, queue)
    trades: list[Trade] = field(default_factory=list)
    orders: dict[int, Order] = field(default_factory=dict)
    settled: list[Trade] = field(default_factory=list)
    market_data: list[int] = field(default_factory=list)  # tickers whose data is missing or stale

    def on_commit(self) -> None:
        # robust: a broker outage must not turn a committed order into an HTTP 500; the sweeper
        # re-drives anything whose task was never sent.
        transaction.on_commit(self._run, robust=True)

    def _run(self) -> None:
        from orders import tasks
        from orders.api.serializers import OrderOutputSerializer, TradeOutputSerializer

        for order_id in self.routes:
            tasks.route_order.apply_async(args=(order_id,))
        for child_id, attempt, queue in self.matches:
            tasks.match_child.apply_async(args=(child_id, attempt), queue=queue)
        if self.trades and settings.SETTLEMENT_CYCLE == "T+0":
            tasks.settle_trades.apply_async(args=([trade.pk for trade in self.trades],))
        messages: list[tuple[str, dict[str, Any]]] = []
        for trade in self.trades:
            messages.append(
                (trade.customer.customer_id, {"type": "fill", "trade": dict(TradeOutputSerializer(trade).data)})
            )
        for order in self.orders.values():
            messages.append(
                (order.customer.customer_id, {"type": "order", "order": dict(OrderOutputSerializer(order).data)})
            )
        for trade in self.settled:
            messages.append(
                (trade.customer.customer_id, {"type": "settled", "trade": dict(TradeOutputSerializer(trade).data)})
            )
        from orders import streaming

        streaming.publish(messages)
        # Last: asking for market data must never delay or break the order flow above.
        for ticker_id in self.market_data:
            marketdata_services.ticker_refresh_for_order(ticker_id=ticker_id)


def _queue_for(pool: Pool) -> str:
    return "dark" if pool.kind == PoolKind.DARK else "lit"


# --- state machine ---------------------------------------------------------------------------------


def _actor_name(actor: Actor | str) -> str:
    if isinstance(actor, str):
        return actor
    if actor is None or not actor.is_authenticated:
        return "system"
    return actor.get_username()


def _transition(
    order: Order,
    to: str,
    *,
    actor: Actor | str,
    events: list[OrderEvent],
    table: dict[str, frozenset[str]] = ORDER_TRANSITIONS,
    **detail: Any,
) -> bool:
    """Move the (locked) order to `to`; append the event. Same status again is a no-op (returns False)."""
    if order.status == to:
        return False
    if to not in table.get(order.status, frozenset()):
        raise TransitionRefused(f"order {order.order_id}: {order.status} -> {to} is not allowed")
    events.append(
        OrderEvent(
            order=order, kind="status", from_status=order.status, to_status=to, actor=_actor_name(actor), detail=detail
        )
    )
    order.status = to
    return True


def _child_transition(
    child: ChildOrder,
    to: str,
    *,
    actor: Actor | str,
    events: list[OrderEvent],
    table: dict[str, frozenset[str]] = CHILD_TRANSITIONS,
    **detail: Any,
) -> bool:
    if child.status == to:
        return False
    if to not in table.get(child.status, frozenset()):
        raise TransitionRefused(f"child {child.pk}: {child.status} -> {to} is not allowed")
    events.append(
        OrderEvent(
            order_id=child.parent_id,
            child=child,
            kind="child_status",
            from_status=child.status,
            to_status=to,
            actor=_actor_name(actor),
            detail=detail,
        )
    )
    child.status = to
    return True


# --- placement -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    order: Order
    created: bool


def _next_gateway_sequence() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('orders_gateway_sequence')")
        (value,) = cursor.fetchone()
    return int(value)


def _replay(existing: Order, fingerprint: str) -> Placement:
    if existing.request_fingerprint != fingerprint:
        raise Conflict(
            f"clientOrderId {existing.client_order_id!r} was already used for a different order ({existing.order_id}).",
            field="clientOrderId",
        )
    return Placement(order=existing, created=False)


@transaction.atomic
def order_place(*, request: OrderRequest, customer: Customer, ticker: Ticker, actor: Actor) -> Placement:
    """Accept an order: record it (status New, gateway sequence) and, after commit, route it.

    The same clientOrderId with the same body returns the original order (created=False); with a
    different body it is a Conflict. Concurrent repeats are arbitrated by the unique constraint.
    Locks: the customer (FOR NO KEY UPDATE, first in the global order), then inserts the order and its
    reservation; nothing else.
    """
    fingerprint = request.fingerprint()
    # One placement at a time per customer: the risk check and the reservation it makes must see every
    # earlier order of the customer (locks: customer before anything of the order flow).
    Customer.objects.select_for_update(no_key=True).filter(pk=customer.pk).first()
    if request.client_order_id:
        existing = Order.objects.filter(customer=customer, client_order_id=request.client_order_id).first()
        if existing is not None:
            return _replay(existing, fingerprint)
    try:
        with transaction.atomic():
            order = Order.objects.create(
                sequence=_next_gateway_sequence(),
                customer=customer,
                ticker=ticker,
                direction=request.direction,
                order_type=request.order_type,
                quantity=request.quantity,
                price=request.price,
                protection_price=(
                    _protection_price(ticker=ticker, direction=request.direction)
                    if request.order_type == OrderType.MARKET
                    else None
                ),
                time_in_force=request.time_in_force,
                client_order_id=request.client_order_id,
                request_fingerprint=fingerprint,
                entered_by=cast(Any, actor) if actor is not None and actor.is_authenticated else None,
            )
    except IntegrityError:
        if not request.client_order_id:
            raise
        # A concurrent request with the same clientOrderId committed first; it is the original.
        existing = Order.objects.get(customer=customer, client_order_id=request.client_order_id)
        return _replay(existing, fingerprint)

    events = [OrderEvent(order=order, kind="accepted", to_status=OrderStatus.NEW, actor=_actor_name(actor), detail={})]
    effects = _Effects(orders={order.pk: order})
    if marketdata_services.needs_refresh(ticker, now=timezone.now()):
        effects.market_data.append(ticker.pk)  # fetched in the background; this order uses what we have
    reject_reason = _pre_trade_refusal(order=order, ticker=ticker)
    if reject_reason:
        order.reject_reason = reject_reason
        _transition(order, OrderStatus.REJECTED, actor="gateway", events=events, reason=reject_reason)
        order.save(update_fields=["status", "reject_reason", "updated_at"])
    else:
        effects.routes.append(order.pk)
    OrderEvent.objects.bulk_create(events)
    effects.on_commit()
    return Placement(order=order, created=True)


def _protection_price(*, ticker: Ticker, direction: str) -> Decimal | None:
    if ticker.reference_price is None:
        return None
    collar = settings.MARKET_ORDER_COLLAR
    if direction == "Buy":
        return round_to_tick(ticker.reference_price * (1 + collar), up=True)
    return round_to_tick(ticker.reference_price * (1 - collar), up=False)


def _pre_trade_refusal(*, order: Order, ticker: Ticker) -> str:
    """Why the order may not trade (empty when it may). Reserves its cash or shares when it may.

    Caller holds the customer's row lock.
    """
    halted = kill_switch.halt_reason(customer_id=order.customer_id, ticker_id=order.ticker_id)
    if halted:
        return halted
    if order.order_type == OrderType.MARKET and order.protection_price is None:
        # Without any reference price a Market order has nothing to be protected against.
        return f"no reference price for {ticker.symbol}: Market orders need one"
    limit = order.venue_limit
    assert limit is not None
    check = settlement_services.reservation_open(
        order_ref=order.pk,
        customer_id=order.customer_id,
        direction=order.direction,
        symbol=ticker.symbol,
        quantity=order.quantity,
        per_share_price=limit,
    )
    return "" if check.accepted else check.reason


# --- routing ---------------------------------------------------------------------------------------


# Halted venues are invisible to the order flow: no child is sent there, and their quotes count neither in
# the depth the router and fill-or-kill take from nor in the NBBO midpoint that steers dark routing and
# prices dark fills. `halted` is always `kill_switch.halted_pool_ids()`, read once per decision.


def _venues(kind: str, *, halted: Collection[int]) -> list[routing.Venue]:
    """The venues orders may go to now: active, and not halted by the kill switch."""
    return [
        routing.Venue(pool_id=pool.pk, name=pool.name, maker_fee=pool.maker_fee, taker_fee=pool.taker_fee)
        for pool in pool_selectors.pools_active(kind=kind)
        if pool.pk not in halted
    ]


def _depth(order: Order, *, halted: Collection[int]) -> list[routing.Level]:
    return [
        routing.Level(pool_id=level.pool_id, price=level.price, quantity=level.quantity)
        for level in pool_selectors.lit_depth(
            ticker_id=order.ticker_id, side=order.direction, limit=order.venue_limit, exclude_pool_ids=halted
        )
    ]


def _midpoint(*, ticker_id: int, halted: Collection[int]) -> Decimal | None:
    return pool_selectors.nbbo(ticker_id=ticker_id, exclude_pool_ids=halted).midpoint


def _is_immediate(*, order_type: str, time_in_force: str) -> bool:
    """IOC, FOK and every Market order trade now or never: they never wait out a halt."""
    return order_type == OrderType.MARKET or time_in_force in (TimeInForce.IOC, TimeInForce.FOK)


def _fit_reason(text: str) -> str:
    # Order.reject_reason holds it.
    limit = kill_switch.REASON_MAX_LENGTH
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _no_lit_venue_reason(*, order: Order, halted: Collection[int]) -> str:
    """Why no lit venue can take the order now: the halt of one of them, or none being active."""
    halted_lit = sorted(pool.pk for pool in pool_selectors.pools_active(kind=PoolKind.LIT) if pool.pk in halted)
    if not halted_lit:
        return "no active lit venue to route to"
    halt = kill_switch.halt_reason(customer_id=order.customer_id, ticker_id=order.ticker_id, pool_id=halted_lit[0])
    return _fit_reason(f"every lit venue is halted ({halt})")


def order_route(*, order_id: int) -> Order | None:
    """Split a New order into child orders, choose a venue for each, and send them (task body).

    The halt rule. An immediate order (IOC, FOK, or any Market order) that a halt keeps from trading
    now - a ticker, customer or All halt covering it, or every lit venue halted - ends Cancelled with
    the halt as its reason, its reservation released: it never trades hours later at a stale price.
    A Day or GTC Limit order waits New instead; the sweeper re-drives it every few seconds (a cheap
    no-op) and it is routed once the halt is lifted (or it expires at the close, Day in calendar mode).
    Halted venues are skipped (see `_venues`). Replaying it for an order that is no longer New is a no-op.
    """
    order = Order.objects.filter(pk=order_id).select_related("ticker").first()
    if order is None or order.status != OrderStatus.NEW:
        return order
    immediate = _is_immediate(order_type=order.order_type, time_in_force=order.time_in_force)
    halt = kill_switch.halt_reason(customer_id=order.customer_id, ticker_id=order.ticker_id)
    if halt:
        # Halted after it was accepted.
        return _order_cancel_unrouted(order_id=order_id, reason=halt) if immediate else order
    # The snapshot is read before taking the order lock: it only steers where children go; the venue
    # decides what actually fills.
    halted = kill_switch.halted_pool_ids()
    lit = _venues(PoolKind.LIT, halted=halted)
    if not lit:
        if immediate:
            return _order_cancel_unrouted(order_id=order_id, reason=_no_lit_venue_reason(order=order, halted=halted))
        return order
    pool_services.books_ensure(ticker_id=order.ticker_id)
    if order.time_in_force == TimeInForce.FOK:
        return _route_fill_or_kill(order_id=order_id, halted=halted)

    dark = _venues(PoolKind.DARK, halted=halted)
    midpoint = _midpoint(ticker_id=order.ticker_id, halted=halted)
    depth = _depth(order, halted=halted)
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",), no_key=True)
            .select_related("customer", "ticker")
            .get(pk=order_id)
        )
        if order.status != OrderStatus.NEW:
            return order
        plans = routing.plan_children(
            side=order.direction,
            limit=order.price,
            quantity=order.quantity,
            time_in_force=order.time_in_force,
            max_child=settings.MAX_CHILD_QUANTITY,
            dark_min_quantity=settings.DARK_MIN_ORDER_QUANTITY,
            midpoint=midpoint,
            dark=dark,
            lit=lit,
            depth=depth,
        )
        events: list[OrderEvent] = []
        _transition(order, OrderStatus.ROUTED, actor="router", events=events, children=len(plans))
        children, pools = _children_create(order=order, plans=plans, events=events)
        order.save(update_fields=["status", "updated_at"])
        OrderEvent.objects.bulk_create(events)
        effects = _Effects(orders={order.pk: order})
        effects.matches.extend(
            (child.pk, 1, _queue_for(pools[plan.pool_id])) for child, plan in zip(children, plans, strict=True)
        )
        effects.on_commit()
    return order


def _children_create(
    *, order: Order, plans: list[routing.ChildPlan], events: list[OrderEvent]
) -> tuple[list[ChildOrder], dict[int, Pool]]:
    """Create the planned children, already routed (attempt 1), with a `routed` event each."""
    pools = Pool.objects.in_bulk([plan.pool_id for plan in plans])
    children = ChildOrder.objects.bulk_create(
        [
            ChildOrder(
                parent=order,
                index=index,
                quantity=plan.quantity,
                status=ChildStatus.ROUTED,
                pool_id=plan.pool_id,
                venue_time_in_force=plan.venue_time_in_force,
                route_reason=plan.reason,
                venues_tried=[pools[plan.pool_id].name],
                attempt=1,
            )
            for index, plan in enumerate(plans, start=1)
        ]
    )
    events.extend(
        OrderEvent(
            order=order,
            child=child,
            kind="routed",
            to_status=ChildStatus.ROUTED,
            actor="router",
            detail={"exchange": pools[plan.pool_id].name, "quantity": plan.quantity, "reason": plan.reason},
        )
        for child, plan in zip(children, plans, strict=True)
    )
    return children, pools


class _FillOrKillMissed(Exception):
    """Raised inside the fill-or-kill transaction to roll every child's fill back."""


def _route_fill_or_kill(*, order_id: int, halted: Collection[int]) -> Order:
    """FOK is all-or-nothing for the whole parent: check and fill across venues in one transaction.

    Every lit book of the ticker that is not halted is locked (in pool order) first, so the liquidity
    counted (on those venues only) is the liquidity taken; if anything falls short the whole transaction
    rolls back and the order is killed.
    """
    reason = ""
    try:
        with transaction.atomic():
            ticker_id = Order.objects.values_list("ticker_id", flat=True).get(pk=order_id)
            books = [
                pool_services.book_lock(pool_id=venue.pool_id, ticker_id=ticker_id)
                for venue in sorted(_venues(PoolKind.LIT, halted=halted), key=lambda venue: venue.pool_id)
            ]
            # The order and the parent of every broker order resting on these books, in one statement by
            # id: each `_submit_locked` below locks the parents its fills touch, and over several children
            # those would be taken out of id order (while a dark match may lock the same parents by id).
            resting_children = BookOrder.objects.filter(
                book__in=books, status=BookOrderStatus.OPEN, client_ref__isnull=False
            ).values("client_ref")
            resting_parents = ChildOrder.objects.filter(pk__in=resting_children).values_list("parent_id", flat=True)
            locked = {
                locked_order.pk: locked_order
                for locked_order in Order.objects.select_for_update(of=("self",), no_key=True)
                .select_related("customer", "ticker")
                .filter(pk__in={order_id, *resting_parents})
                .order_by("pk")
            }
            order = locked[order_id]
            if order.status != OrderStatus.NEW:
                return order
            # The books are locked: this depth is exactly what can be taken.
            depth = _depth(order, halted=halted)
            available = sum(level.quantity for level in depth)
            if available < order.quantity:
                reason = f"FOK: only {available} of {order.quantity} available within the limit"
                raise _FillOrKillMissed(reason)
            # Take the best prices first, wherever they are; one venue's share becomes its children.
            per_venue: dict[int, int] = {}
            remaining = order.quantity
            for level in depth:
                take = min(level.quantity, remaining)
                per_venue[level.pool_id] = per_venue.get(level.pool_id, 0) + take
                remaining -= take
                if remaining == 0:
                    break
            effects = _Effects(orders={order.pk: order})
            events: list[OrderEvent] = []
            _transition(order, OrderStatus.ROUTED, actor="router", events=events)
            order.save(update_fields=["status", "updated_at"])
            venues = {venue.pool_id: venue for venue in _venues(PoolKind.LIT, halted=halted)}
            plans = [
                routing.ChildPlan(
                    quantity=child_quantity,
                    pool_id=pool_id,
                    reason=f"fill-or-kill: best prices, {take} on {venues[pool_id].name}",
                    venue_time_in_force=TimeInForce.FOK,
                )
                for pool_id, take in per_venue.items()
                for child_quantity in routing.split_quantity(take, settings.MAX_CHILD_QUANTITY)
            ]
            children, _ = _children_create(order=order, plans=plans, events=events)
            OrderEvent.objects.bulk_create(events)
            books_by_pool = {book.pool_id: book for book in books}
            for child in children:
                assert child.pool_id is not None
                _submit_locked(book=books_by_pool[child.pool_id], child=child, effects=effects, may_reroute=False)
            order.refresh_from_db()
            if order.filled_quantity != order.quantity:
                reason = f"FOK: filled {order.filled_quantity} of {order.quantity}; rolled back"
                raise _FillOrKillMissed(reason)
            effects.on_commit()
            return order
    except _FillOrKillMissed:
        pass
    return _order_cancel_unrouted(order_id=order_id, reason=reason)


def _order_cancel_unrouted(*, order_id: int, reason: str) -> Order:
    """Finish a New order that will not be routed (FOK killed, immediate order halted): Cancelled with
    `reason`, its reservation released, the update streamed. A no-op once the order is no longer New."""
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",), no_key=True)
            .select_related("customer", "ticker")
            .get(pk=order_id)
        )
        if order.status != OrderStatus.NEW:
            return order
        events: list[OrderEvent] = []
        order.reject_reason = reason
        _transition(order, OrderStatus.CANCELLED, actor="router", events=events, reason=reason)
        order.save(update_fields=["status", "reject_reason", "updated_at"])
        settlement_services.reservation_close(order_ref=order.pk)
        OrderEvent.objects.bulk_create(events)
        _Effects(orders={order.pk: order}).on_commit()
    return order


# --- matching ----------------------------------------------------------------------------------------


def child_match(*, child_id: int, attempt: int) -> ChildOrder | None:
    """Send a routed child to its venue and record what happened (task body).

    Idempotent: a task for an attempt that already reached the venue, or for a child that has since
    moved or finished, returns without doing anything. That is checked twice: first on an unlocked
    read, so a duplicate (a redelivery, a sweeper's re-send of a task still queued behind a backlog)
    returns None without queueing on the hot book lock; then, authoritatively, under the lock.
    """
    peek = (
        ChildOrder.objects.filter(pk=child_id)
        .values(
            "pool_id",
            "attempt",
            "submitted_attempt",
            "status",
            "parent__ticker_id",
            "parent__customer_id",
            "parent__order_type",
            "parent__time_in_force",
        )
        .first()
    )
    if peek is None or peek["pool_id"] is None:
        return None
    # Safe without the lock: these only move forward (attempts grow, a final status stays final), so a
    # task this read turns away would be turned away under the lock as well.
    if peek["attempt"] != attempt or peek["submitted_attempt"] >= attempt or peek["status"] in FINAL_CHILD_STATUSES:
        return None
    halt = kill_switch.halt_reason(
        customer_id=peek["parent__customer_id"], ticker_id=peek["parent__ticker_id"], pool_id=peek["pool_id"]
    )
    if halt:
        # The halt rule (see `order_route`): an immediate order's child is cancelled, never sent late.
        if _is_immediate(order_type=peek["parent__order_type"], time_in_force=peek["parent__time_in_force"]):
            return _child_cancel_halted(
                child_id=child_id,
                attempt=attempt,
                pool_id=peek["pool_id"],
                ticker_id=peek["parent__ticker_id"],
                reason=halt,
            )
        # A Day/GTC Limit child stays in flight, untouched; the sweeper sends it again after the halt.
        return None
    with transaction.atomic():
        book = pool_services.book_lock(pool_id=peek["pool_id"], ticker_id=peek["parent__ticker_id"])
        # Read under the book lock: nothing else may change this child while we hold it.
        child = ChildOrder.objects.select_related("parent__customer", "parent__ticker", "pool").get(pk=child_id)
        if _match_moot(child, pool_id=book.pool_id, attempt=attempt):
            return child
        effects = _Effects()
        _submit_locked(book=book, child=child, effects=effects, may_reroute=True)
        effects.on_commit()
    return child


def _match_moot(child: ChildOrder, *, pool_id: int, attempt: int) -> bool:
    """A match task for this (pool, attempt) has nothing left to do: the child moved to another venue,
    was re-routed to a newer attempt, already reached the venue with this one, or is finished."""
    return (
        child.pool_id != pool_id
        or child.attempt != attempt
        or child.submitted_attempt >= attempt
        or child.status in FINAL_CHILD_STATUSES
    )


def _child_cancel_halted(*, child_id: int, attempt: int, pool_id: int, ticker_id: int, reason: str) -> ChildOrder:
    """Cancel an immediate order's child that a halt keeps from its venue, with the halt as reason.

    It never reached the venue for this attempt and an immediate child never rests, so nothing is on a
    book. The parent can no longer fill completely, so it takes the halt as its reason; when this was
    its last open child it is finished (Cancelled, with what filled so far), its reservation released.
    Locks: the child's book, then the parent, then the child (the
    module's order). Idempotent as `child_match`: a stale attempt or a finished child is left alone.
    """
    with transaction.atomic():
        book = pool_services.book_lock(pool_id=pool_id, ticker_id=ticker_id)
        parent_id = ChildOrder.objects.values_list("parent_id", flat=True).get(pk=child_id)
        order = (
            Order.objects.select_for_update(of=("self",), no_key=True)
            .select_related("customer", "ticker")
            .get(pk=parent_id)
        )
        child = ChildOrder.objects.select_for_update(of=("self",), no_key=True).get(pk=child_id)
        if _match_moot(child, pool_id=book.pool_id, attempt=attempt):
            return child
        events: list[OrderEvent] = []
        _child_transition(child, ChildStatus.CANCELLED, actor="kill switch", events=events, reason=reason)
        child.save(update_fields=["status", "updated_at"])
        has_open_children = ChildOrder.objects.filter(parent=order).exclude(status__in=FINAL_CHILD_STATUSES).exists()
        _transition(
            order,
            _parent_status_after_fills(order, has_open_children=has_open_children),
            actor="kill switch",
            events=events,
            reason=reason,
        )
        # Set even while other children still work: this slice will never fill, so the order can only
        # end Cancelled, and this is why.
        order.reject_reason = order.reject_reason or reason
        if order.is_final:
            settlement_services.reservation_close(order_ref=order.pk)
        order.save(update_fields=["status", "reject_reason", "updated_at"])
        OrderEvent.objects.bulk_create(events)
        _Effects(orders={order.pk: order}).on_commit()
    return child


def _submit_locked(*, book: Book, child: ChildOrder, effects: _Effects, may_reroute: bool) -> None:
    """Submit the child's open quantity to the locked book and book every resulting fill.

    Caller holds the book lock and is inside a transaction. Locks (FOR NO KEY UPDATE, module docstring):
    the parents of every child that traded (by id), then those children (by id), then updates the
    reservations of those parents (by id). The fill-or-kill route calls this once per child, so it locks
    its order and every resting broker order's parent on its books up front, by id, in one statement:
    each call here then only re-locks parents the route already holds.
    """
    order = child.parent
    midpoint = (
        _midpoint(ticker_id=order.ticker_id, halted=kill_switch.halted_pool_ids())
        if book.pool.kind == PoolKind.DARK
        else None
    )
    result = pool_services.book_submit(
        book=book,
        client_ref=child.pk,
        side=order.direction,
        price=order.venue_limit,
        quantity=child.remaining,
        time_in_force=child.venue_time_in_force,
        midpoint=midpoint,
    )
    child.submitted_attempt = child.attempt

    maker_child_ids = {ref for ref in result.maker_client_refs.values() if ref is not None}
    makers = {maker.pk: maker for maker in ChildOrder.objects.filter(pk__in=maker_child_ids).select_related("pool")}
    parent_ids = sorted({order.pk, *(maker.parent_id for maker in makers.values())})
    parents = {
        parent.pk: parent
        for parent in Order.objects.select_for_update(of=("self",), no_key=True)
        .select_related("customer", "ticker")
        .filter(pk__in=parent_ids)
        .order_by("pk")
    }
    if maker_child_ids:
        # The incoming child with the makers, all by id (the global lock order); alone, it is the only
        # child this transaction touches and its UPDATE below is lock enough.
        list(
            ChildOrder.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk__in={child.pk, *maker_child_ids})
            .order_by("pk")
        )
    order = parents[order.pk]
    child.parent = order
    for maker in makers.values():
        maker.parent = parents[maker.parent_id]

    events: list[OrderEvent] = []
    trades: list[Trade] = []
    settles_on = (
        settlement_services.settlement_due_on(traded_at=result.executions[0].executed_at) if result.executions else None
    )
    for execution in result.executions:
        trades.append(_trade(child=child, execution=execution, pool=book.pool, role=LiquidityRole.TAKER))
        maker_ref = result.maker_client_refs[execution.pk]
        if maker_ref is not None:
            trades.append(
                _trade(child=makers[maker_ref], execution=execution, pool=book.pool, role=LiquidityRole.MAKER)
            )
    for trade in trades:
        trade.settles_on = settles_on
    Trade.objects.bulk_create(trades)
    touched_children: dict[int, ChildOrder] = {child.pk: child}
    for trade in trades:
        trade_child = touched_children.setdefault(trade.child_id, makers.get(trade.child_id) or child)
        trade_child.filled_quantity += trade.quantity
        parent = parents[trade.order_id]
        parent.filled_quantity += trade.quantity
        parent.filled_notional += trade.price * trade.quantity
        parent.fees += trade.fee
        events.append(
            OrderEvent(
                order=parent,
                child=trade_child,
                kind="fill",
                actor=book.pool.name,
                detail={
                    "tradeId": str(trade.trade_id),
                    "quantity": trade.quantity,
                    "price": str(trade.price),
                    "exchange": book.pool.name,
                    "liquidity": trade.liquidity,
                },
            )
        )

    for maker in makers.values():
        _child_transition(
            maker,
            ChildStatus.FILLED if maker.remaining == 0 else ChildStatus.PARTIALLY_FILLED,
            actor=book.pool.name,
            events=events,
        )
    _settle_incoming_child(
        child=child, result=result, book=book, events=events, effects=effects, may_reroute=may_reroute
    )

    now = timezone.now()
    for touched in touched_children.values():
        touched.updated_at = now
    ChildOrder.objects.bulk_update(
        touched_children.values(),
        [
            "filled_quantity",
            "status",
            "submitted_attempt",
            "attempt",
            "pool",
            "venues_tried",
            "route_reason",
            "venue_time_in_force",
            "updated_at",
        ],
    )
    open_parents = set(
        ChildOrder.objects.filter(parent_id__in=parents.keys())
        .exclude(status__in=FINAL_CHILD_STATUSES)
        .values_list("parent_id", flat=True)
    )
    filled: dict[int, tuple[int, Decimal]] = {}
    for trade in trades:
        quantity, cost = filled.get(trade.order_id, (0, Decimal(0)))
        filled[trade.order_id] = (quantity + trade.quantity, cost + _trade_cost(trade))
    for order_id in sorted(filled):
        quantity, cost = filled[order_id]
        settlement_services.reservation_fill(order_ref=order_id, quantity=quantity, cost=cost)
    for parent in parents.values():
        for_status = _parent_status_after_fills(parent, has_open_children=parent.pk in open_parents)
        _transition(parent, for_status, actor=book.pool.name, events=events)
        parent.updated_at = now
        if parent.is_final:
            settlement_services.reservation_close(order_ref=parent.pk)
    Order.objects.bulk_update(parents.values(), ["filled_quantity", "filled_notional", "fees", "status", "updated_at"])
    OrderEvent.objects.bulk_create(events)
    for trade in trades:
        trade.order = parents[trade.order_id]
    effects.trades.extend(trades)
    effects.orders.update(parents)


def _trade_cost(trade: Trade) -> Decimal:
    return settlement_services.trade_cost(
        direction=trade.direction, quantity=trade.quantity, price=trade.price, fee=trade.fee
    )


def _trade(*, child: ChildOrder, execution: Any, pool: Pool, role: str) -> Trade:
    order = child.parent
    return Trade(
        order=order,
        child=child,
        execution=execution,
        customer=order.customer,
        ticker=order.ticker,
        pool=pool,
        direction=order.direction,
        quantity=execution.quantity,
        price=execution.price,
        fee=execution.taker_fee if role == LiquidityRole.TAKER else execution.maker_fee,
        liquidity=role,
        trade_date=execution.executed_at,
    )


def _settle_incoming_child(
    *,
    child: ChildOrder,
    result: pool_services.VenueResult,
    book: Book,
    events: list[OrderEvent],
    effects: _Effects,
    may_reroute: bool,
) -> None:
    """Decide what becomes of the incoming child: filled, resting, re-routed, or done."""
    if child.remaining == 0:
        _child_transition(child, ChildStatus.FILLED, actor=book.pool.name, events=events)
        return
    if child.filled_quantity:
        _child_transition(child, ChildStatus.PARTIALLY_FILLED, actor=book.pool.name, events=events)
    if result.rested_quantity:
        return  # resting at the venue
    order = child.parent
    target = None
    if may_reroute:
        can_rest = order.order_type == OrderType.LIMIT and order.time_in_force in (TimeInForce.DAY, TimeInForce.GTC)
        halted = kill_switch.halted_pool_ids()
        target = routing.next_lit_venue(
            side=order.direction,
            tried=child.venues_tried,
            lit=_venues(PoolKind.LIT, halted=halted),
            depth=_depth(order, halted=halted),
            can_rest=can_rest,
        )
    if target is None:
        _child_transition(
            child,
            ChildStatus.CANCELLED,
            actor=book.pool.name,
            events=events,
            reason=f"{result.cancelled_quantity} unfilled at {book.pool.name}, no other venue to try",
        )
        return
    venue, reason = target
    child.pool_id = venue.pool_id
    child.attempt += 1
    child.venues_tried = [*child.venues_tried, venue.name]
    child.route_reason = reason
    child.venue_time_in_force = routing.venue_time_in_force(
        parent_time_in_force=order.time_in_force, is_market=order.order_type == OrderType.MARKET, dark=False
    )
    events.append(
        OrderEvent(
            order_id=child.parent_id,
            child=child,
            kind="rerouted",
            actor="router",
            detail={"from": book.pool.name, "exchange": venue.name, "quantity": child.remaining, "reason": reason},
        )
    )
    effects.matches.append((child.pk, child.attempt, "lit"))


def _parent_status_after_fills(order: Order, *, has_open_children: bool) -> str:
    if order.filled_quantity == order.quantity:
        return OrderStatus.FILLED
    if not has_open_children:
        # Every child ended (IOC/Market remainders, nowhere left to route) short of the full quantity.
        return OrderStatus.CANCELLED
    if order.filled_quantity:
        return OrderStatus.PARTIALLY_FILLED
    return order.status


# --- cancel ------------------------------------------------------------------------------------------


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
        books = {
            pool_id: pool_services.book_lock(pool_id=pool_id, ticker_id=ticker_id)
            for pool_id in sorted(Pool.objects.values_list("pk", flat=True))
        }
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
            _child_transition(child, child_to, actor=actor, events=events, removedFromBook=removed)
            child.updated_at = now
        ChildOrder.objects.bulk_update(children, ["status", "updated_at"])
        _transition(order, to, actor=actor, events=events, requestedBy=_actor_name(actor))
        order.save(update_fields=["status", "updated_at"])
        settlement_services.reservation_close(order_ref=order.pk)
        OrderEvent.objects.bulk_create(events)
        _Effects(orders={order.pk: order}).on_commit()
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


# --- settlement -------------------------------------------------------------------------------------


def trade_settle(*, trade_id: int, today: date | None = None) -> Trade | None:
    """Post a due trade to the ledger and stamp its settlementDate; a no-op if settled or not yet due.

    The trade's row lock serializes concurrent settles of the same trade; the ledger's unique
    constraint would refuse a second posting anyway. Locks (module docstring): the trade (FOR NO KEY
    UPDATE), then the ledger posting, then its order's reservation. It locks no order or child: the
    settled event's foreign-key checks take FOR KEY SHARE on them at commit, which no-key locks held by
    matching, cancels and corrections never block.
    """
    with transaction.atomic():
        trade = (
            Trade.objects.select_for_update(of=("self",), no_key=True)
            .select_related("order", "customer", "ticker", "pool")
            .filter(pk=trade_id)
            .first()
        )
        if trade is None or trade.settlement_date is not None or trade.busted:
            return trade
        due = trade.settles_on or settlement_services.settlement_due_on(traded_at=trade.trade_date)
        if due > (today or settlement_services.settlement_today()):
            return trade
        settlement_services.trade_post(trade=_to_settle(trade))
        settlement_services.reservation_settle(order_ref=trade.order_id, cost=_trade_cost(trade))
        trade.settlement_date = timezone.now()
        trade.save(update_fields=["settlement_date"])
        OrderEvent.objects.create(
            order=trade.order,
            child_id=trade.child_id,
            kind="settled",
            actor="settlement",
            detail={"tradeId": str(trade.trade_id), "settlesOn": str(due)},
        )
        _Effects(settled=[trade]).on_commit()
    return trade


def trades_settle(*, trade_ids: list[int], today: date | None = None) -> int:
    """Settle each of the trades that is due; returns how many were posted now.

    One transaction per trade (see `trade_settle` for its locks), so a batch never holds two trades.
    """
    posted = 0
    for trade_id in trade_ids:
        before = Trade.objects.filter(pk=trade_id, settlement_date__isnull=True).exists()
        trade = trade_settle(trade_id=trade_id, today=today)
        posted += int(before and trade is not None and trade.settlement_date is not None)
    return posted


def trades_settle_due(*, today: date | None = None, batch: int = 1000) -> int:
    """The scheduled settlement run: every unsettled trade due on or before today."""
    today = today or settlement_services.settlement_today()
    due = list(
        Trade.objects.filter(settlement_date__isnull=True, busted=False, settles_on__lte=today)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch]
    )
    return trades_settle(trade_ids=due, today=today)


# --- trade corrections ------------------------------------------------------------------------------


def _trade_snapshot_change(trade: Trade, *, change: str, reason: str, actor: Actor | str) -> TradeVersion:
    return TradeVersion(
        trade=trade,
        version=trade.version,
        quantity=trade.quantity,
        price=trade.price,
        fee=trade.fee,
        settled=trade.settlement_date is not None,
        change=change,
        reason=reason,
        changed_by=_actor_name(actor),
    )


@retry_on_lock_conflict()
def trade_correct(
    *,
    trade_id: int,
    reason: str,
    actor: Actor | str,
    price: Decimal | None = None,
    quantity: int | None = None,
    bust: bool = False,
) -> Trade:
    """Amend (price, or quantity down) or bust a trade, as agreed with the venue.

    The correction applies to the venue execution and to every broker trade it made (both customers
    when two met). Each trade keeps its previous version; a settled trade gets a reversal of the old
    version and a posting of the new one, an unsettled one just changes what its order has pending;
    children and parents are recounted from their remaining trades. Only for finished orders.
    Locks (FOR NO KEY UPDATE, the global order of the module docstring): the parent orders, their
    children, the trades (each by id), the venue execution, then the ledger, then the reservations (by
    order id). Runs again after a deadlock or serialization failure (then Busy, a 503).
    """
    reason = CORRECTION_REASON_TEXT.require(reason, field="reason")  # bounded to TradeVersion.reason, one line
    if not reason:
        raise ApplicationError("A correction needs a reason.", field="reason")
    if not bust and price is None and quantity is None:
        raise ApplicationError("Give a new price or quantity, or bust the trade.", field="price")
    target = Trade.objects.select_related("execution").filter(pk=trade_id).first()
    if target is None:
        raise NotFound("No such trade.")
    with transaction.atomic():
        trades = list(Trade.objects.filter(execution_id=target.execution_id).order_by("pk"))
        parents = {
            order.pk: order
            for order in Order.objects.select_for_update(of=("self",), no_key=True)
            .select_related("customer", "ticker")
            .filter(pk__in={trade.order_id for trade in trades})
            .order_by("pk")
        }
        working = [order for order in parents.values() if not order.is_final]
        if working:
            raise Conflict(f"Order {working[0].order_id} is still working; correct its trades once it is done.")
        children = {
            child.pk: child
            for child in ChildOrder.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk__in={trade.child_id for trade in trades})
            .order_by("pk")
        }
        trades = list(
            Trade.objects.select_for_update(of=("self",), no_key=True)
            .select_related("pool", "ticker", "customer")
            .filter(pk__in=[trade.pk for trade in trades])
            .order_by("pk")
        )
        current = next(trade for trade in trades if trade.pk == trade_id)
        if current.busted:
            raise Conflict("The trade is busted; nothing left to correct.", field="tradeId")
        new_quantity = current.quantity if quantity is None else quantity
        new_price = current.price if price is None else price
        if not bust and not 1 <= new_quantity <= current.quantity:
            raise ApplicationError(
                f"A correction may lower the quantity (1 to {current.quantity}) or bust the trade.", field="quantity"
            )
        execution = pool_services.execution_correct(
            execution_id=current.execution_id, price=new_price, quantity=new_quantity, bust=bust, reason=reason
        )
        versions, events = [], []
        pending_changes: dict[int, Decimal] = {}
        for trade in trades:
            versions.append(
                _trade_snapshot_change(trade, change="Bust" if bust else "Amend", reason=reason, actor=actor)
            )
            old_cost, was_settled, old_version = _trade_cost(trade), trade.settlement_date is not None, trade.version
            if bust:
                trade.busted = True
            else:
                trade.quantity, trade.price = new_quantity, new_price
                trade.fee = execution.taker_fee if trade.liquidity == LiquidityRole.TAKER else execution.maker_fee
                trade.version += 1
            trade.save(update_fields=["quantity", "price", "fee", "version", "busted"])
            if was_settled:
                settlement_services.trade_reverse(trade_ref=trade.pk, version=old_version)
                if not bust:
                    settlement_services.trade_post(trade=_to_settle(trade))
            else:
                new_cost = Decimal(0) if bust else _trade_cost(trade)
                pending_changes[trade.order_id] = pending_changes.get(trade.order_id, Decimal(0)) + new_cost - old_cost
            events.append(
                OrderEvent(
                    order=parents[trade.order_id],
                    child_id=trade.child_id,
                    kind="busted" if bust else "amended",
                    actor=_actor_name(actor),
                    detail={
                        "tradeId": str(trade.trade_id),
                        "reason": reason,
                        "version": trade.version,
                        "quantity": trade.quantity,
                        "price": str(trade.price),
                    },
                )
            )
        # Reservations last and by order id, after the ledger (the global lock order).
        for order_id in sorted(pending_changes):
            settlement_services.reservation_adjust(order_ref=order_id, pending_change=pending_changes[order_id])
        TradeVersion.objects.bulk_create(versions)
        _recount_after_correction(parents=parents, children=children, events=events, actor=actor)
        OrderEvent.objects.bulk_create(events)
        _Effects(orders=parents).on_commit()
    return current


def _to_settle(trade: Trade) -> settlement_services.TradeToSettle:
    return settlement_services.TradeToSettle(
        trade_ref=trade.pk,
        customer_id=trade.customer_id,
        pool_id=trade.pool_id,
        symbol=trade.ticker.symbol,
        direction=trade.direction,
        quantity=trade.quantity,
        price=trade.price,
        fee=trade.fee,
        version=trade.version,
    )


def _recount_after_correction(
    *, parents: dict[int, Order], children: dict[int, ChildOrder], events: list[OrderEvent], actor: Actor | str
) -> None:
    """Fill totals from the remaining (not busted) trades; a Filled order or child that no longer is
    full ends Cancelled: it is finished and its remainder will never trade."""
    child_filled = dict(
        Trade.objects.filter(child_id__in=children, busted=False)
        .values("child_id")
        .annotate(total=Sum("quantity"))
        .values_list("child_id", "total")
    )
    now = timezone.now()
    for child in children.values():
        child.filled_quantity = child_filled.get(child.pk, 0)
        if child.status == ChildStatus.FILLED and child.remaining:
            _child_transition(child, ChildStatus.CANCELLED, actor=actor, events=events, table=CHILD_CORRECTIONS)
        child.updated_at = now
    ChildOrder.objects.bulk_update(children.values(), ["filled_quantity", "status", "updated_at"])
    for order in parents.values():
        totals = Trade.objects.filter(order=order, busted=False).aggregate(
            total_quantity=Sum("quantity"), total_notional=Sum(F("price") * F("quantity")), total_fees=Sum("fee")
        )
        order.filled_quantity = totals["total_quantity"] or 0
        order.filled_notional = totals["total_notional"] or Decimal(0)
        order.fees = totals["total_fees"] or Decimal(0)
        if order.status == OrderStatus.FILLED and order.filled_quantity < order.quantity:
            _transition(order, OrderStatus.CANCELLED, actor=actor, events=events, table=ORDER_CORRECTIONS)
        order.updated_at = now
    Order.objects.bulk_update(parents.values(), ["filled_quantity", "filled_notional", "fees", "status", "updated_at"])


# --- recovery ----------------------------------------------------------------------------------------


SWEEP_BATCH = 1000  # items of each kind claimed per sweep; the rest wait for the next sweep


def orders_sweep(*, older_than: timedelta | None = None) -> dict[str, int]:
    """Re-drive work whose task may have been lost (broker down at commit, worker killed).

    Orders still New and children whose current attempt never reached its venue, unchanged for
    `older_than` (default SWEEP_AFTER_SECONDS), are claimed (`_sweep_claim`) and their task is sent
    again: at most once per interval, and each further re-send of the same stuck state waits twice as
    long as the one before (up to SWEEP_BACKOFF_MAX_SECONDS). Under a backlog, where the tasks are
    queued rather than lost, the sweeper so adds a few duplicates per item, not a copy of every stuck
    item every 5 s; and a duplicate match task returns before the book lock (`child_match`).

    The claims commit before anything is published, so no row stays locked while up to 2,000 tasks go
    to the broker (the very tasks that will want those rows); if publishing fails (the broker cannot be
    reached), the claims are taken back (`_sweep_unclaim`) so the next sweep sends them again, and
    whatever did go out before the failure is a harmless duplicate.
    """
    after = timedelta(seconds=settings.SWEEP_AFTER_SECONDS) if older_than is None else older_than
    now = timezone.now()
    cutoff = now - after
    effects = _Effects()
    with transaction.atomic():
        orders = _sweep_claim(
            model=Order,
            stuck="status = %s AND updated_at < %s",
            params=[OrderStatus.NEW, cutoff],
            now=now,
            after=after,
            returning="claimed.id",
        )
        effects.routes.extend(order_id for (order_id,) in orders)
        children = _sweep_claim(
            model=ChildOrder,
            stuck="status IN (%s, %s) AND attempt > submitted_attempt AND pool_id IS NOT NULL AND updated_at < %s",
            params=[ChildStatus.ROUTED, ChildStatus.PARTIALLY_FILLED, cutoff],
            now=now,
            after=after,
            returning="claimed.id, claimed.attempt, claimed.pool_id",
        )
        pools = Pool.objects.in_bulk({pool_id for _, _, pool_id in children})
        effects.matches.extend(
            (child_id, attempt, _queue_for(pools[pool_id])) for child_id, attempt, pool_id in children
        )
    if effects.routes or effects.matches:
        logger.warning("sweeper re-driving %d orders and %d children", len(effects.routes), len(effects.matches))
        try:
            effects._run()
        except Exception:
            _sweep_unclaim(order_ids=effects.routes, child_ids=[child_id for child_id, _, _ in effects.matches])
            raise
    return {"orders": len(effects.routes), "children": len(effects.matches)}


def _sweep_unclaim(*, order_ids: list[int], child_ids: list[int]) -> None:
    """Take back claims whose tasks may not have been sent: due again at the next sweep."""
    Order.objects.filter(pk__in=order_ids).update(swept_at=None)
    ChildOrder.objects.filter(pk__in=child_ids).update(swept_at=None)


def _sweep_claim(
    *,
    model: type[Order] | type[ChildOrder],
    stuck: str,
    params: list[Any],
    now: datetime,
    after: timedelta,
    returning: str,
) -> list[tuple[Any, ...]]:
    """Claim the stuck rows of `model` that are due for a re-send, and return `returning` of each.

    `stuck` is the SQL condition of a stuck row (its placeholders take `params`). A stuck row is due when
    the sweeper has not re-sent it since the row last changed, or when its last re-send is older than
    `after` x 2^(re-sends - 1), capped at SWEEP_BACKOFF_MAX_SECONDS. The one conditional UPDATE records
    the claim in `swept_at` and `sweeps` and leaves `updated_at` alone (the row's last real change).
    Rows another transaction holds (a matcher, a concurrent sweep) are skipped, not waited for, and a
    row that changed meanwhile is re-checked against the condition (READ COMMITTED), so two sweeps
    never both claim, and send, the same row.
    """
    table = connection.ops.quote_name(model._meta.db_table)
    # Only constants go into the text: the table name and the callers' literal conditions.
    sql = f"""
        UPDATE {table} AS claimed
        SET swept_at = %s,
            sweeps = CASE WHEN claimed.swept_at IS NULL OR claimed.swept_at < claimed.updated_at
                          THEN 1 ELSE claimed.sweeps + 1 END
        WHERE claimed.id IN (
            SELECT id FROM {table}
            WHERE ({stuck})
              AND (swept_at IS NULL
                   OR swept_at < updated_at
                   OR swept_at <= %s - LEAST(%s * power(2, LEAST(sweeps, 30) - 1), %s) * interval '1 second')
            ORDER BY id
            LIMIT %s
            FOR NO KEY UPDATE SKIP LOCKED
        )
        RETURNING {returning}
    """  # noqa: S608
    backoff: list[Any] = [now, after.total_seconds(), settings.SWEEP_BACKOFF_MAX_SECONDS, SWEEP_BATCH]
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, *params, *backoff])
        return list(cursor.fetchall())


def sweep_backoff_reset() -> int:
    """Make every order and child the sweeper is backing off due again; returns how many.

    Called after a halt is released: what the halt held (orders waiting New, children held before their
    venue) was re-sent and backed off while the halt lasted, and would otherwise wait up to
    SWEEP_BACKOFF_MAX_SECONDS more for its next re-send. Rows another transaction holds are skipped, not
    waited for (they are moving anyway, which restarts their back-off), so this can never deadlock
    with the order flow.
    """
    reset = 0
    # Only rows still stuck (the sweep's own conditions): `swept_at` stays on rows that moved on since.
    stuck = (
        (Order, "status = %s", [OrderStatus.NEW]),
        (
            ChildOrder,
            "status IN (%s, %s) AND attempt > submitted_attempt",
            [ChildStatus.ROUTED, ChildStatus.PARTIALLY_FILLED],
        ),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for model, condition, params in stuck:
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(
                f"""
                UPDATE {table} SET swept_at = NULL, sweeps = 0
                WHERE id IN (
                    SELECT id FROM {table} WHERE swept_at IS NOT NULL AND {condition}
                    ORDER BY id FOR NO KEY UPDATE SKIP LOCKED
                )
                """,  # noqa: S608  (only constants go into the text: the table name and the conditions)
                params,
            )
            reset += cursor.rowcount
    return reset
