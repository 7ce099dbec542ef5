"""Routing: split a New order into child orders and choose a venue for each (the smart order router's
decisions are pure functions in `orders.routing`; this reads their inputs and records their plan).

Halted venues are invisible to the order flow: no child is sent there, and their quotes count neither in
the depth the router and fill-or-kill take from nor in the NBBO midpoint that steers dark routing and
prices dark fills. `halted` is always the `kill_switch.halts_active()` snapshot's pool ids, read once per
decision.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from decimal import Decimal

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from broker.sql import CompiledQuery, insert_rows, literal_in, update_rows
from orders import kill_switch
from orders import routing as router
from orders.models import ChildOrder, ChildStatus, EventKind, Order, OrderEvent, OrderStatus, OrderType, TimeInForce
from orders.services.effects import ROUTE_PENDING_TTL_SECONDS, Effects, queue_for, route_pending_clear
from orders.services.transitions import transition
from pools import selectors as pool_selectors
from pools import services as pool_services
from pools.models import Book, BookOrder, BookOrderStatus, PoolKind
from settlement import services as settlement_services

logger = logging.getLogger(__name__)


def venues(kind: str, *, halted: Collection[int]) -> list[router.Venue]:
    """The venues orders may go to now: active, and not halted by the kill switch."""
    return [
        router.Venue(pool_id=pool.pk, name=pool.name, maker_fee=pool.maker_fee, taker_fee=pool.taker_fee)
        for pool in pool_selectors.pools_active(kind=kind)
        if pool.pk not in halted
    ]


def depth(order: Order, *, halted: Collection[int]) -> list[router.Level]:
    return [
        router.Level(pool_id=level.pool_id, price=level.price, quantity=level.quantity)
        for level in pool_selectors.lit_depth(
            ticker_id=order.ticker_id, side=order.direction, limit=order.venue_limit, exclude_pool_ids=halted
        )
    ]


def midpoint(*, ticker_id: int, halted: Collection[int]) -> Decimal | None:
    return pool_selectors.nbbo(ticker_id=ticker_id, exclude_pool_ids=halted).midpoint


def is_immediate(*, order_type: str, time_in_force: str) -> bool:
    """IOC, FOK and every Market order trade now or never: they never wait out a halt."""
    return order_type == OrderType.MARKET or time_in_force in (TimeInForce.IOC, TimeInForce.FOK)


def _fit_reason(text: str) -> str:
    # Order.reject_reason holds it.
    limit = kill_switch.REASON_MAX_LENGTH
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _no_lit_venue_reason(*, order: Order, halts: kill_switch.HaltSnapshot) -> str:
    """Why no lit venue can take the order now: the halt of one of them, or none being active."""
    halted = halts.halted_pool_ids
    halted_lit = sorted(pool.pk for pool in pool_selectors.pools_active(kind=PoolKind.LIT) if pool.pk in halted)
    if not halted_lit:
        return "no active lit venue to route to"
    halt = halts.reason(customer_id=order.customer_id, ticker_id=order.ticker_id, pool_id=halted_lit[0])
    return _fit_reason(f"every lit venue is halted ({halt})")


def order_route(*, order_id: int, match_now: bool = True, books_checked: bool = False) -> Order | None:
    """Split a New order into child orders, choose a venue for each, and send them (task body).

    The halt rule. An immediate order (IOC, FOK, or any Market order) that a halt keeps from trading
    now - a ticker, customer or All halt covering it, or every lit venue halted - ends Cancelled with
    the halt as its reason, its reservation released: it never trades hours later at a stale price.
    A Day or GTC Limit order waits New instead; the sweeper re-drives it every few seconds (a cheap
    no-op) and it is routed once the halt is lifted (or it expires at the close, Day in calendar mode).
    Halted venues are skipped (see `venues`). Replaying it for an order that is no longer New is a no-op.

    After the commit the children's books are matched right here when free (`books_drain_now`): one
    task instead of two for most orders; a busy book gets its own `match_book` task. `match_now=False`
    sends every book its task instead (what a busy book gets).

    Locks: the order (FOR NO KEY UPDATE), for the whole decision: the market snapshot (depth, midpoint)
    is read under it, unlocked; it only steers where children go, the venue decides what fills. A
    fill-or-kill order and a ticker whose books this process has not seen yet leave that transaction
    first: both lock books, which come before orders in the global lock order.
    """
    halts = kill_switch.halts_cached()
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",), no_key=True)
            .select_related("customer", "ticker")
            .filter(pk=order_id)
            .first()
        )
        if order is None or order.status != OrderStatus.NEW:
            return order
        immediate = is_immediate(order_type=order.order_type, time_in_force=order.time_in_force)
        halt = halts.reason(customer_id=order.customer_id, ticker_id=order.ticker_id)
        halted = halts.halted_pool_ids
        lit = venues(PoolKind.LIT, halted=halted)
        if halt or not lit:
            # Halted after it was accepted, or nowhere to go: an immediate order ends now, others wait New.
            if immediate:
                return _cancel_unrouted(order, reason=halt or _no_lit_venue_reason(order=order, halts=halts))
            return order
        books_ready = books_checked or pool_selectors.books_known_ready(ticker_id=order.ticker_id)
        if books_ready and order.time_in_force != TimeInForce.FOK:
            return _route_locked(order, halted=halted, lit=lit, match_now=match_now)
    # Outside the order's transaction: these lock books.
    pool_services.books_ensure(ticker_id=order.ticker_id)
    if order.time_in_force == TimeInForce.FOK:
        return _route_fill_or_kill(order_id=order_id, halts=halts)
    return order_route(order_id=order_id, match_now=match_now, books_checked=True)


def _route_locked(order: Order, *, halted: set[int], lit: list[router.Venue], match_now: bool) -> Order:
    """Plan and record the children of the locked New order; their books are matched after commit."""
    events: list[OrderEvent] = []
    plans = _route_one(order, market=_Market(ticker_id=order.ticker_id, halted=halted, lit=lit), events=events)
    children_create([(order, plans)], events=events)
    books = _books([(order, plans)])
    order.save(update_fields=["status", "updated_at"])
    OrderEvent.objects.bulk_create(events)
    effects = Effects(orders={order.pk: order})
    if match_now:
        transaction.on_commit(lambda: _drain(books), robust=True)
    else:
        effects.books.update(books)
    effects.on_commit()
    return order


class _Market:
    """What routing decisions read of the market, read once for all the orders of one ticker routed in
    one transaction: the venues, each side's displayed depth, the NBBO midpoint (only if asked for)."""

    def __init__(self, *, ticker_id: int, halted: set[int], lit: list[router.Venue]) -> None:
        self.ticker_id, self.halted, self.lit = ticker_id, halted, lit
        self._dark: list[router.Venue] | None = None
        self._midpoint: tuple[Decimal | None] | None = None
        self._depth: dict[str, list[pool_selectors.DepthLevel]] = {}

    def dark(self) -> list[router.Venue]:
        if self._dark is None:
            self._dark = venues(PoolKind.DARK, halted=self.halted)
        return self._dark

    def midpoint(self) -> Decimal | None:
        if self._midpoint is None:
            self._midpoint = (midpoint(ticker_id=self.ticker_id, halted=self.halted),)
        return self._midpoint[0]

    def depth(self, order: Order) -> list[router.Level]:
        """`depth(order)`, cut from the whole side read once: the levels within the order's limit."""
        side = order.direction
        if side not in self._depth:
            self._depth[side] = pool_selectors.lit_depth(
                ticker_id=self.ticker_id, side=side, limit=None, exclude_pool_ids=self.halted
            )
        limit = order.venue_limit
        return [
            router.Level(pool_id=level.pool_id, price=level.price, quantity=level.quantity)
            for level in self._depth[side]
            if limit is None or (level.price <= limit if side == "Buy" else level.price >= limit)
        ]


def _route_one(order: Order, *, market: _Market, events: list[OrderEvent]) -> list[router.ChildPlan]:
    """Plan the locked New order's children and move it to Routed; the caller creates the children."""
    large = order.quantity >= settings.DARK_MIN_ORDER_QUANTITY
    dark = market.dark() if large else []
    plans = router.plan_children(
        side=order.direction,
        limit=order.price,
        quantity=order.quantity,
        time_in_force=order.time_in_force,
        max_child=settings.MAX_CHILD_QUANTITY,
        dark_min_quantity=settings.DARK_MIN_ORDER_QUANTITY,
        # The midpoint only matters to an order large enough for the dark.
        midpoint=market.midpoint() if dark else None,
        dark=dark,
        lit=market.lit,
        depth=market.depth(order),
    )
    transition(order, OrderStatus.ROUTED, actor="router", events=events, children=len(plans))
    return plans


def _books(routed: list[tuple[Order, list[router.ChildPlan]]]) -> dict[tuple[int, int], str]:
    """The books the planned children go to, each with its matching queue."""
    pools = pool_selectors.pools_by_id()
    return {
        (plan.pool_id, order.ticker_id): queue_for(pools[plan.pool_id]) for order, plans in routed for plan in plans
    }


# New orders of one ticker routed per transaction; more waiting go in the next one, and past
# ROUTE_BATCHES_PER_TASK batches in a follow-up task.
ROUTE_BATCH = 200
ROUTE_BATCHES_PER_TASK = 5


def _immediate() -> Q:
    """Orders that trade now or never (see `is_immediate`)."""
    return Q(order_type=OrderType.MARKET) | Q(time_in_force__in=(TimeInForce.IOC, TimeInForce.FOK))


def orders_route(*, order_id: int, ticker_id: int | None = None, match_now: bool = True) -> int:
    """Route this New order and, with it, every New order of its ticker no other transaction holds
    (the `route_order` task's body); returns how many orders its batches claimed.

    The gateway sends one task per ticker while one is waiting (`effects.route_request`), so under
    load one task routes the orders of many requests, in batches of ROUTE_BATCH per transaction: the
    market snapshot, the venues and the writes (children, events, the orders' status) are paid once per
    batch. Each order gets the decision `order_route` would make for it alone (the halt rule included).

    The orders are claimed with SKIP LOCKED, so two tasks for one ticker split its orders between them
    instead of queueing on each other. Whoever else holds a New order routes it (another route task),
    ends it (a cancel, the close) or sends its task (the sweeper's claim), so nothing skipped is left.
    This task's own order, if another transaction held it, is routed on its own at the end, waiting for
    its lock: a replay or duplicate of the task is a no-op, as for `order_route`. Fill-or-kill orders go
    the single way, each with a task of its own (the gateway sends it whatever is waiting).
    """
    status: str | None = None  # not read yet (the gateway's task knows the ticker, and needs no more)
    if ticker_id is None:  # a re-send or a fill-or-kill order's own task: read what the order is
        peek = Order.objects.filter(pk=order_id).values_list("status", "ticker_id", "time_in_force").first()
        if peek is None:
            return 0
        status, ticker_id, time_in_force = peek
        if status == OrderStatus.NEW and time_in_force == TimeInForce.FOK:
            order_route(order_id=order_id, match_now=match_now)
    # Before reading what is New: an order committed after this sends a task of its own. Even when this
    # task's own order was routed meanwhile (by an earlier task of the ticker), the orders accepted while
    # this task was waiting counted on it.
    if not route_pending_clear(ticker_id=ticker_id):
        # The mark may stay up to its expiry, and orders accepted meanwhile send no task: one more, then.
        _route_again(order_id=order_id, countdown=ROUTE_PENDING_TTL_SECONDS)
    pool_services.books_ensure(ticker_id=ticker_id)  # outside the orders' transaction: it locks books
    handled: set[int] = set()
    for _ in range(ROUTE_BATCHES_PER_TASK):
        try:
            batch, books = _route_batch(ticker_id=ticker_id, match_now=match_now)
        except OperationalError:
            raise  # transient: the task is retried, and claims again whatever is still New
        except Exception:
            # One bad order must not hold up its whole ticker: route the batch's orders one at a time.
            logger.exception("a route batch of ticker %s failed; routing its orders one at a time", ticker_id)
            handled.update(_route_singly(ticker_id=ticker_id, match_now=match_now))
            break
        handled.update(batch)
        full = len(batch) == ROUTE_BATCH
        if books and match_now and not full:
            from orders.services.matching import books_drain_now

            books_drain_now(books)
        elif books:
            # More to route: the books are matched by their own tasks meanwhile, on another worker.
            Effects(books=books).run()
        if not full:
            break
    else:
        # A long burst: the rest goes to a fresh task, so none runs into its time limit mid-batch.
        _route_again(order_id=order_id, countdown=0)
    if order_id not in handled:
        if status is None:  # routed by an earlier task, most likely: an unlocked read tells
            status = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
        if status == OrderStatus.NEW:
            order_route(order_id=order_id, match_now=match_now)
    return len(handled)


def _route_again(*, order_id: int, countdown: float) -> None:
    """Send one more route task for this order's ticker, whatever mark is set (best effort: the sweeper
    re-drives any order left New)."""
    from orders import tasks

    try:
        tasks.route_order.apply_async(args=(order_id,), countdown=countdown)
    except Exception:
        logger.exception("could not send a follow-up route task for order %s", order_id)


def _route_singly(*, ticker_id: int, match_now: bool) -> set[int]:
    """Route the oldest New orders of the ticker each in a transaction of its own (`order_route`), as
    before batches: an order that fails is logged and stays New for the sweeper, the others go on."""
    order_ids = list(
        Order.objects.filter(ticker_id=ticker_id, status=OrderStatus.NEW)
        .exclude(time_in_force=TimeInForce.FOK)
        .order_by("pk")
        .values_list("pk", flat=True)[:ROUTE_BATCH]
    )
    for order_id in order_ids:
        try:
            order_route(order_id=order_id, match_now=match_now)
        except OperationalError:
            raise
        except Exception:
            logger.exception("routing order %s failed; it stays New", order_id)
    return set(order_ids)


_IMMEDIATE_ONLY, _CUSTOMERS_HALTED, _ONE = "immediate only", "customers halted", "one order"


def _claim(
    shape: tuple[str | None, int],
    *,
    ticker_id: int,
    customer_ids: list[int] | None = None,
    order_id: int | None = None,
) -> QuerySet[Order]:
    """The next batch of New orders of the ticker no other transaction holds, locked, with their customer
    and ticker. Only orders with something to do now: while a halt covers the ticker (or no lit venue
    is open) only the immediate ones, which are cancelled; a halted customer's other orders stay New,
    untouched, for the sweeper once the halt is lifted. The shape: (which of those, the batch size);
    `_ONE` claims only `order_id` (the warm-up's rehearsal, orders.rehearsal, which must not hold anyone
    else's order: a route task skips what another transaction holds)."""
    variant, size = shape
    # New as a literal: the partial index `order_new` then serves the prepared statement too
    # (broker.sql.literal_in); bound, the plan read every order of the ticker through its index.
    new = Order.objects.filter(literal_in(Order, "status", [OrderStatus.NEW]), ticker_id=ticker_id).exclude(
        time_in_force=TimeInForce.FOK
    )
    if variant == _IMMEDIATE_ONLY:
        new = new.filter(_immediate())
    elif variant == _CUSTOMERS_HALTED:
        new = new.exclude(Q(customer_id__any=customer_ids) & ~_immediate())
    elif variant == _ONE:
        if order_id is None:
            raise ValueError("the one-order claim needs its order_id")
        new = new.filter(pk=order_id)
    return (
        new.select_for_update(of=("self",), no_key=True, skip_locked=True)
        .select_related("customer", "ticker")
        .order_by("pk")[:size]
    )


# Compiled once per process (broker.sql.CompiledQuery): every routing batch runs it.
_CLAIM = CompiledQuery(_claim, rehearse=[((None, ROUTE_BATCH), {"ticker_id": 0})])


def _route_batch(
    *, ticker_id: int, match_now: bool = True, only: int | None = None
) -> tuple[list[int], dict[tuple[int, int], str]]:
    """One transaction of `orders_route`: claim up to ROUTE_BATCH New orders of the ticker and route (or,
    halted, cancel) each. Returns their ids and the books their children went to that are still to be
    matched.

    With `match_now`, the ticker's lit books that no other transaction holds are locked first (books
    before orders in the global lock order; skipped, never waited for, when held) and, unless the batch
    is full, the children routed to them are matched in this same transaction (`book_match_locked`):
    one commit, one outbox write and one stream pass for routing and matching instead of two each.
    The children of a book held elsewhere (or of a dark book) are left to the caller. `only`: claim that
    one order and no other (orders.rehearsal).
    """
    halts = kill_switch.halts_cached()
    halted = halts.halted_pool_ids
    lit = venues(PoolKind.LIT, halted=halted)
    halted_customers = [halt.customer_id for halt in halts.active if halt.customer_id is not None]
    books: dict[tuple[int, int], str] = {}
    ticker_halted = bool(halts.reason(customer_id=0, ticker_id=ticker_id)) or not lit
    with transaction.atomic():
        held: dict[int, Book] = {}
        if match_now and not ticker_halted:
            held = pool_services.books_lock_free(ticker_id=ticker_id, pool_ids=[venue.pool_id for venue in lit])
        if only is not None:
            orders = _CLAIM.objects((_ONE, 1), ticker_id=ticker_id, order_id=only)
        elif ticker_halted:
            orders = _CLAIM.objects((_IMMEDIATE_ONLY, ROUTE_BATCH), ticker_id=ticker_id)
        elif halted_customers:
            orders = _CLAIM.objects(
                (_CUSTOMERS_HALTED, ROUTE_BATCH), ticker_id=ticker_id, customer_ids=halted_customers
            )
        else:
            orders = _CLAIM.objects((None, ROUTE_BATCH), ticker_id=ticker_id)
        if not orders:
            return [], books
        market = _Market(ticker_id=ticker_id, halted=halted, lit=lit)
        events: list[OrderEvent] = []
        routed: list[tuple[Order, list[router.ChildPlan]]] = []
        for order in orders:
            halt = halts.reason(customer_id=order.customer_id, ticker_id=ticker_id)
            if halt or not lit:
                # Only immediate orders were claimed under a halt (the claim read this same snapshot).
                assert is_immediate(order_type=order.order_type, time_in_force=order.time_in_force)
                _cancel_unrouted(order, reason=halt or _no_lit_venue_reason(order=order, halts=halts))
                continue
            routed.append((order, _route_one(order, market=market, events=events)))
        children = children_create(routed, events=events)
        books = _books(routed)
        now = timezone.now()
        for order, _ in routed:
            order.updated_at = now
        effects = Effects(orders={order.pk: order for order, _ in routed}, audit=events)
        written: set[int] = set()
        inline = sorted(key for key in books if key[0] in held)
        if inline and len(orders) < ROUTE_BATCH:
            from orders.services.matching import Known, book_match_locked

            # The orders' Routed messages go first, as they would from a commit of their own.
            matched = Effects()
            matched.lead_with(effects)
            halts_now = kill_switch.halts_active()  # read under the books' locks, as every match does
            # The match takes these orders and children as this transaction holds them, instead of
            # reading them back; it writes the rows of the orders that traded, status included.
            known = Known(orders={order.pk: order for order, _ in routed}, children={c.pk: c for c in children})
            for key in inline:
                book_match_locked(held[key[0]], effects=matched, halts=halts_now, known=known)
                del books[key]
            effects, written = matched, known.written
        # Routed, for the orders the match did not write already (one write of the row each).
        update_rows(Order, [order for order, _ in routed if order.pk not in written], ["status", "updated_at"])
        effects.on_commit()
    return [order.pk for order in orders], books


def order_route_as_batch(*, order_id: int, ticker_id: int) -> None:
    """Route this New order, and no other, exactly as the route task's batch would (`_route_batch`: its
    books locked if free, its children matched in the same transaction). For the warm-up's rehearsal
    (orders.rehearsal); the route task itself calls `orders_route`."""
    _route_batch(ticker_id=ticker_id, only=order_id)


def _drain(books: dict[tuple[int, int], str]) -> None:
    from orders.services.matching import books_drain_now

    books_drain_now(books)


def children_create(
    routed: list[tuple[Order, list[router.ChildPlan]]], *, events: list[OrderEvent]
) -> list[ChildOrder]:
    """Create the planned children of each order, already routed (attempt 1), with a `routed` event
    each: one INSERT for all of them."""
    pools = pool_selectors.pools_by_id()
    planned = [(order, index, plan) for order, plans in routed for index, plan in enumerate(plans, start=1)]
    children = insert_rows(
        ChildOrder,
        [
            ChildOrder(
                parent=order,
                ticker_id=order.ticker_id,
                index=index,
                quantity=plan.quantity,
                status=ChildStatus.ROUTED,
                pool_id=plan.pool_id,
                venue_time_in_force=plan.venue_time_in_force,
                route_reason=plan.reason,
                venues_tried=[pools[plan.pool_id].name],
                attempt=1,
            )
            for order, index, plan in planned
        ],
    )
    events.extend(
        OrderEvent(
            order=order,
            child=child,
            kind=EventKind.ROUTED,
            to_status=ChildStatus.ROUTED,
            actor="router",
            detail={"exchange": pools[plan.pool_id].name, "quantity": plan.quantity, "reason": plan.reason},
        )
        for child, (order, _, plan) in zip(children, planned, strict=True)
    )
    return children


class _FillOrKillMissed(Exception):
    """Raised inside the fill-or-kill transaction to roll every child's fill back."""


def _route_fill_or_kill(*, order_id: int, halts: kill_switch.HaltSnapshot) -> Order:
    """FOK is all-or-nothing for the whole parent: check and fill across venues in one transaction.

    Every lit book of the ticker that is not halted is locked (in pool order) first, so the liquidity
    counted (on those venues only) is the liquidity taken; if anything falls short the whole transaction
    rolls back and the order is killed.
    """
    from orders.services.matching import submit_batch

    halted = halts.halted_pool_ids
    reason = ""
    try:
        with transaction.atomic():
            ticker_id = Order.objects.values_list("ticker_id", flat=True).get(pk=order_id)
            lit = sorted(venues(PoolKind.LIT, halted=halted), key=lambda venue: venue.pool_id)
            books = {}
            for venue in lit:
                book = pool_services.book_lock(pool_id=venue.pool_id, ticker_id=ticker_id)
                assert book is not None  # waits for the lock
                books[venue.pool_id] = book
            # The order and the parent of every broker order resting on these books, in one statement by
            # id: the batches below lock the parents their fills touch, one book after another, and
            # those would otherwise be taken out of id order (while a dark match may lock the same
            # parents by id).
            resting_children = BookOrder.objects.filter(
                book__in=books.values(), status=BookOrderStatus.OPEN, client_ref__isnull=False
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
            levels = depth(order, halted=halted)
            available = sum(level.quantity for level in levels)
            if available < order.quantity:
                reason = f"FOK: only {available} of {order.quantity} available within the limit"
                raise _FillOrKillMissed(reason)
            # Take the best prices first, wherever they are; one venue's share becomes its children.
            per_venue: dict[int, int] = {}
            remaining = order.quantity
            for level in levels:
                take = min(level.quantity, remaining)
                per_venue[level.pool_id] = per_venue.get(level.pool_id, 0) + take
                remaining -= take
                if remaining == 0:
                    break
            effects = Effects(orders={order.pk: order})
            events: list[OrderEvent] = []
            transition(order, OrderStatus.ROUTED, actor="router", events=events)
            order.save(update_fields=["status", "updated_at"])
            names = {venue.pool_id: venue.name for venue in lit}
            plans = [
                router.ChildPlan(
                    quantity=child_quantity,
                    pool_id=pool_id,
                    reason=f"fill-or-kill: best prices, {take} on {names[pool_id]}",
                    venue_time_in_force=TimeInForce.FOK,
                )
                for pool_id, take in per_venue.items()
                for child_quantity in router.split_quantity(take, settings.MAX_CHILD_QUANTITY)
            ]
            children = children_create([(order, plans)], events=events)
            OrderEvent.objects.bulk_create(events)
            for child in children:
                child.parent = order
            for pool_id in sorted(per_venue):
                submit_batch(
                    book=books[pool_id],
                    children=[child for child in children if child.pool_id == pool_id],
                    halts=halts,
                    effects=effects,
                    may_reroute=False,
                )
            order.refresh_from_db()
            if order.filled_quantity != order.quantity:
                reason = f"FOK: filled {order.filled_quantity} of {order.quantity}; rolled back"
                raise _FillOrKillMissed(reason)
            effects.orders[order.pk] = order
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
        return _cancel_unrouted(order, reason=reason)


def _cancel_unrouted(order: Order, *, reason: str) -> Order:
    """Cancel the locked New order with `reason` (caller holds its lock, inside a transaction)."""
    events: list[OrderEvent] = []
    order.reject_reason = reason
    transition(order, OrderStatus.CANCELLED, actor="router", events=events, reason=reason)
    order.save(update_fields=["status", "reject_reason", "updated_at"])
    settlement_services.reservation_close(order_ref=order.pk)
    OrderEvent.objects.bulk_create(events)
    Effects(orders={order.pk: order}).on_commit()
    return order
