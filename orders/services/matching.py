"""Matching: drain every child waiting for a venue's book in one locked batch, and book what it did.

A book (pool, ticker) is matched by one transaction at a time: its row lock (`pools.services.book_lock`).
`book_match` takes that lock once for every child routed to the book and not yet submitted (oldest
first, up to MATCH_BATCH), loads the book once, runs each child through the in-memory engine in turn
and then writes everything in a fixed handful of statements: the venue's new and changed book orders
and executions, the trades, the children, the parents, the reservations and the events. Under load a
batch holds many children, so the cost per order falls as the rate rises, instead of every order paying
for its own lock, book load and a dozen round trips.

Idempotent by construction: a child is "waiting" while `attempt > submitted_attempt`, and the batch
sets `submitted_attempt` in the same transaction as its fills. A redelivered or duplicate task finds
nothing waiting (an unlocked peek, so it does not even queue on the hot lock) and returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from broker.sql import CompiledQuery, insert_rows, literal_in, update_rows
from orders import kill_switch
from orders import routing as router
from orders.models import (
    FINAL_CHILD_STATUSES,
    ChildOrder,
    ChildStatus,
    EventKind,
    LiquidityRole,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    TimeInForce,
    Trade,
)
from orders.services.effects import Effects, queue_for
from orders.services.routing import depth, is_immediate, midpoint, venues
from orders.services.transitions import transition
from pools import services as pool_services
from pools.models import Book, Execution, Pool, PoolKind
from settlement import services as settlement_services

# Children submitted per transaction; more waiting go in the next batch (sent after this one commits).
MATCH_BATCH = 200

WAITING_STATUSES = (ChildStatus.ROUTED, ChildStatus.PARTIALLY_FILLED)


def _waiting(*, pool_id: int, ticker_id: int) -> QuerySet[ChildOrder]:
    """Children routed to this book whose current attempt has not reached it yet."""
    # The statuses as literals: the partial index `child_waiting` then serves the prepared statement too
    # (broker.sql.literal_in); bound, the plan read every child of the venue.
    return ChildOrder.objects.filter(
        literal_in(ChildOrder, "status", WAITING_STATUSES),
        pool_id=pool_id,
        ticker_id=ticker_id,  # the child's own copy: no join to the orders to find them
        attempt__gt=F("submitted_attempt"),
    )


def _immediate() -> Q:
    """Children of orders that trade now or never (IOC, FOK, Market): a halt cancels them."""
    return Q(parent__order_type=OrderType.MARKET) | Q(parent__time_in_force__in=(TimeInForce.IOC, TimeInForce.FOK))


_BOOK_HALTED, _CUSTOMERS_HALTED = "book halted", "customers halted"


def _batch(
    shape: tuple[str | None, int], *, pool_id: int, ticker_id: int, customer_ids: list[int] | None = None
) -> QuerySet[ChildOrder]:
    """The next batch of children waiting for the book, with their parents (read under its lock).

    A halt of the whole book leaves only the immediate children with anything to do: be cancelled. A
    customer's halt leaves that customer's other children waiting, untouched. The shape: (which of
    those, the batch size).
    """
    variant, size = shape
    waiting = _waiting(pool_id=pool_id, ticker_id=ticker_id)
    if variant == _BOOK_HALTED:
        waiting = waiting.filter(_immediate())
    elif variant == _CUSTOMERS_HALTED:
        waiting = waiting.exclude(Q(parent__customer_id__any=customer_ids) & ~_immediate())
    return waiting.select_related("parent").order_by("pk")[:size]


# The order flow's hot queries, compiled once per process (broker.sql.CompiledQuery): Django compiling
# them again for every batch was a third of the order workers' CPU.
# Each with the shape every light-load order takes and values no row has, run at a process's warm-up.
_NOTHING: dict[str, object] = {"ids": [0]}
_BATCH = CompiledQuery(_batch, rehearse=[((None, MATCH_BATCH), {"pool_id": 0, "ticker_id": 0})])
_CHILDREN = CompiledQuery(lambda shape, ids: ChildOrder.objects.filter(pk__any=ids), rehearse=[(None, _NOTHING)])
_PARENTS_LOCKED = CompiledQuery(
    lambda shape, ids: (
        Order.objects.select_for_update(of=("self",), no_key=True)
        .select_related("customer", "ticker")
        .filter(pk__any=ids)
        .order_by("pk")
    ),
    rehearse=[(None, _NOTHING)],
)
_PARENTS_WITH_OPEN_CHILDREN = CompiledQuery(
    lambda shape, ids: (
        ChildOrder.objects.filter(parent_id__any=ids)
        .exclude(status__in=FINAL_CHILD_STATUSES)
        .values_list("parent_id")
        .distinct()
    ),
    rehearse=[(None, _NOTHING)],
)


def book_match(*, pool_id: int, ticker_id: int, wait: bool = True, peek: bool = True) -> int | None:
    """Submit every child waiting for the (pool, ticker) book, in one transaction (task body).

    Returns how many children it took (0: nothing was waiting), or None when `wait` is False and
    another transaction holds the book (its holder, or the task sent for this book, takes them).
    `peek=False` skips the unlocked look for waiting children (the caller just committed some).

    The halt rule (see `order_route`): a child covered by a halt is not sent; an immediate order's child
    is cancelled with the halt as reason, a Day or GTC Limit child stays waiting, untouched, and the
    sweeper sends it again once the halt is lifted.
    """
    if peek and not _waiting(pool_id=pool_id, ticker_id=ticker_id).exists():
        return 0  # unlocked peek: a duplicate task must not queue on the hot book's lock
    with transaction.atomic():
        book = pool_services.book_lock(pool_id=pool_id, ticker_id=ticker_id, wait=wait)
        if book is None:
            return None
        effects = Effects()
        taken = book_match_locked(book, effects=effects)
        if taken:
            effects.on_commit()
    return taken


def book_match_locked(
    book: Book, *, effects: Effects, halts: kill_switch.HaltSnapshot | None = None, known: Known | None = None
) -> int:
    """`book_match` once the book is locked, in the caller's transaction: submit the next batch of
    children waiting for it (oldest first) and add what they did to `effects`; how many it took.

    `halts` must have been read after the book was locked (`kill_switch.halts_active`): a halt committed
    before the lock was taken stops the batch. Read here when not given. `known`: orders and children the
    caller's transaction holds and knows exactly (see `Known`), used instead of reading them again.
    """
    pool_id, ticker_id = book.pool_id, book.ticker_id
    # Read under the book lock: nothing else may change these children while we hold it.
    if halts is None:
        halts = kill_switch.halts_active()
    halted_customers = [halt.customer_id for halt in halts.active if halt.customer_id is not None]
    if halts.reason(customer_id=0, ticker_id=ticker_id, pool_id=pool_id):
        children = _BATCH.objects((_BOOK_HALTED, MATCH_BATCH), pool_id=pool_id, ticker_id=ticker_id)
    elif halted_customers:
        children = _BATCH.objects(
            (_CUSTOMERS_HALTED, MATCH_BATCH), pool_id=pool_id, ticker_id=ticker_id, customer_ids=halted_customers
        )
    else:
        children = _BATCH.objects((None, MATCH_BATCH), pool_id=pool_id, ticker_id=ticker_id)
    if not children:
        return 0
    if known is not None:
        # The caller's own objects: the ones its later writes and messages are made from.
        children = [known.children.get(child.pk, child) for child in children]
    submit_batch(book=book, children=children, halts=halts, effects=effects, may_reroute=True, known=known)
    if len(children) == MATCH_BATCH:
        effects.books[(pool_id, ticker_id)] = queue_for(book.pool)  # more may be waiting
    return len(children)


def child_match(*, child_id: int, attempt: int) -> ChildOrder | None:
    """Make sure this child's attempt reaches its venue: drain its book (the sweeper's re-send).

    A task for an attempt that already reached the venue, or for a child that has since moved or
    finished, returns without doing anything (checked on an unlocked read: these fields only move
    forward, so what it turns away the lock would turn away too).
    """
    peek = ChildOrder.objects.filter(pk=child_id).values("pool_id", "attempt", "submitted_attempt", "status").first()
    if peek is None or peek["pool_id"] is None:
        return None
    if peek["attempt"] != attempt or peek["submitted_attempt"] >= attempt or peek["status"] in FINAL_CHILD_STATUSES:
        return None
    ticker_id = Order.objects.filter(children__pk=child_id).values_list("ticker_id", flat=True).get()
    book_match(pool_id=peek["pool_id"], ticker_id=ticker_id)
    return ChildOrder.objects.get(pk=child_id)


@dataclass
class Known:
    """Orders a transaction has locked and routed itself, with every child they have (it created them
    all: an order has none while New), all as that transaction left them in memory: a route batch that
    matches its children inline (`orders.services.routing`). The match takes them from here instead of
    reading them again, and knows from here whether such an order still has a working child. It notes
    in `written` the orders whose row it wrote (status, fills), which the caller then need not write."""

    orders: dict[int, Order]
    children: dict[int, ChildOrder]
    written: set[int] = field(default_factory=set)
    # The children by parent, built once: a large batch asks for each of its parents, under the book locks.
    _by_parent: dict[int, list[ChildOrder]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for child in self.children.values():
            self._by_parent.setdefault(child.parent_id, []).append(child)

    def has_open_children(self, order_id: int) -> bool:
        return any(child.status not in FINAL_CHILD_STATUSES for child in self._by_parent.get(order_id, ()))


@dataclass
class _Batch:
    """The children of one batch and everything their fills touch, keyed by id."""

    book: Book
    known: Known | None = None
    submitted: list[tuple[ChildOrder, pool_services.VenueResult]] = field(default_factory=list)
    halted: list[tuple[ChildOrder, str]] = field(default_factory=list)
    children: dict[int, ChildOrder] = field(default_factory=dict)
    parents: dict[int, Order] = field(default_factory=dict)


def submit_batch(
    *,
    book: Book,
    children: Sequence[ChildOrder],
    halts: kill_switch.HaltSnapshot,
    effects: Effects,
    may_reroute: bool,
    session: pool_services.BookSession | None = None,
    known: Known | None = None,
) -> None:
    """Submit `children` (oldest first) to the locked book and book every resulting fill.

    Caller holds the book lock and is inside a transaction; `children` are waiting for this book and
    were read under its lock, with their parents. Locks (FOR NO KEY UPDATE, the global order of the
    package docstring): the parents of every child that traded or changed (by id, one statement), then
    the reservations of those parents (by order id, one statement). Children need no lock of their own:
    a working child only ever changes under the lock of its venue's book, which the caller holds for
    every child this touches (the incoming ones and the resting makers on this book).
    """
    session = session or pool_services.BookSession(book)
    pool = book.pool
    dark_midpoint = (
        midpoint(ticker_id=book.ticker_id, halted=halts.halted_pool_ids) if pool.kind == PoolKind.DARK else None
    )
    batch = _Batch(book=book, known=known)
    for child in children:
        order = child.parent
        reason = halts.reason(customer_id=order.customer_id, ticker_id=order.ticker_id, pool_id=pool.pk)
        batch.children[child.pk] = child
        if reason:
            if is_immediate(order_type=order.order_type, time_in_force=order.time_in_force):
                batch.halted.append((child, reason))
            continue
        result = session.submit(
            client_ref=child.pk,
            side=order.direction,
            price=order.venue_limit,
            quantity=child.remaining,
            time_in_force=child.venue_time_in_force,
            midpoint=dark_midpoint,
        )
        child.submitted_attempt = child.attempt
        batch.submitted.append((child, result))
    session.flush()
    _book_fills(batch=batch, halts=halts, effects=effects, may_reroute=may_reroute)


def _book_fills(*, batch: _Batch, halts: kill_switch.HaltSnapshot, effects: Effects, may_reroute: bool) -> None:
    book, pool = batch.book, batch.book.pool
    maker_refs = {ref for _, result in batch.submitted for _, ref in result.fills if ref is not None}
    outside = maker_refs - batch.children.keys()
    if batch.known is not None:
        # Never the case today (a child rests only on the book of its one inline match), but a known
        # child must stay the caller's object.
        batch.children.update((ref, batch.known.children[ref]) for ref in outside & batch.known.children.keys())
        outside -= batch.known.children.keys()
    if outside:
        # Resting makers from earlier batches (read under the book lock, which guards them).
        batch.children.update((child.pk, child) for child in _CHILDREN.objects(ids=sorted(outside)))
    parent_ids = sorted({child.parent_id for child in batch.children.values()})
    known = batch.known
    batch.parents = {} if known is None else {pk: known.orders[pk] for pk in parent_ids if pk in known.orders}
    unknown = [pk for pk in parent_ids if pk not in batch.parents]
    if unknown:
        # Fresh, locked parents: another book's batch may have filled the same parents since we read them.
        batch.parents.update((parent.pk, parent) for parent in _PARENTS_LOCKED.objects(ids=unknown))
    for child in batch.children.values():
        child.parent = batch.parents[child.parent_id]

    events: list[OrderEvent] = []
    trades: list[Trade] = []
    settles_on = None
    for child, result in batch.submitted:
        for execution, maker_ref in result.fills:
            settles_on = settles_on or settlement_services.settlement_due_on(traded_at=execution.executed_at)
            trades.append(_trade(child=child, execution=execution, pool=pool, role=LiquidityRole.TAKER))
            if maker_ref is not None:
                maker = batch.children[maker_ref]
                trades.append(_trade(child=maker, execution=execution, pool=pool, role=LiquidityRole.MAKER))
    for trade in trades:
        trade.settles_on = settles_on
    insert_rows(Trade, trades)

    touched: dict[int, ChildOrder] = {child.pk: child for child, _ in batch.submitted}
    touched.update((child.pk, child) for child, _ in batch.halted)
    filled: dict[int, tuple[int, Decimal]] = {}
    for trade in trades:
        child = batch.children[trade.child_id]
        touched[child.pk] = child
        child.filled_quantity += trade.quantity
        parent = batch.parents[trade.order_id]
        parent.filled_quantity += trade.quantity
        parent.filled_notional += trade.price * trade.quantity
        parent.fees += trade.fee
        quantity, cost = filled.get(parent.pk, (0, Decimal(0)))
        filled[parent.pk] = (quantity + trade.quantity, cost + _trade_cost(trade))
        events.append(
            OrderEvent(
                order=parent,
                child=child,
                kind=EventKind.FILL,
                actor=pool.name,
                detail={
                    "tradeId": str(trade.trade_id),
                    "quantity": trade.quantity,
                    "price": str(trade.price),
                    "exchange": pool.name,
                    "liquidity": trade.liquidity,
                },
            )
        )

    # Status after all the batch's fills: a child that rested early in the batch may have been taken
    # by a later one.
    results = {child.pk: result for child, result in batch.submitted}
    halt_reasons: dict[int, str] = {}
    for child in touched.values():
        if child.pk in results:
            _settle_incoming_child(
                child=child, result=results[child.pk], book=book, halts=halts, events=events, effects=effects,
                may_reroute=may_reroute,
            )  # fmt: skip
        elif child.status not in FINAL_CHILD_STATUSES and child.filled_quantity:
            # A resting maker from an earlier batch.
            maker_status = ChildStatus.FILLED if child.remaining == 0 else ChildStatus.PARTIALLY_FILLED
            transition(child, maker_status, actor=pool.name, events=events)
    for child, reason in batch.halted:
        # The halt rule: an immediate order's child never reaches the venue late. The parent can no
        # longer fill completely, so it takes the halt as its reason.
        transition(child, ChildStatus.CANCELLED, actor="kill switch", events=events, reason=reason)
        halt_reasons[child.parent_id] = reason

    now = timezone.now()
    for child in touched.values():
        child.updated_at = now
    update_rows(
        ChildOrder,
        touched.values(),
        [
            "filled_quantity", "status", "submitted_attempt", "attempt", "pool", "venues_tried", "route_reason",
            "venue_time_in_force", "updated_at",
        ],
    )  # fmt: skip
    changed_parents = {child.parent_id for child in touched.values()}
    open_parents: set[int] = set()
    if known is not None:
        open_parents = {pk for pk in changed_parents if pk in known.orders and known.has_open_children(pk)}
    if unknown_changed := sorted(pk for pk in changed_parents if known is None or pk not in known.orders):
        open_parents.update(parent_id for (parent_id,) in _PARENTS_WITH_OPEN_CHILDREN.rows(ids=unknown_changed))
    reservations: dict[int, settlement_services.ReservationChange] = {}
    for parent_id in sorted(changed_parents):
        parent = batch.parents[parent_id]
        halt_reason = halt_reasons.get(parent_id)
        status = parent_status_after_fills(parent, has_open_children=parent_id in open_parents)
        if halt_reason:
            # Set even while other children still work: this slice will never fill, so the order can
            # only end Cancelled, and this is why.
            parent.reject_reason = parent.reject_reason or halt_reason
            transition(parent, status, actor="kill switch", events=events, reason=halt_reason)
        else:
            transition(parent, status, actor=pool.name, events=events)
        parent.updated_at = now
        quantity, cost = filled.get(parent_id, (0, Decimal(0)))
        if quantity or parent.is_final:
            reservations[parent_id] = settlement_services.ReservationChange(
                filled=quantity, cost=cost, close=parent.is_final
            )
    settlement_services.reservations_apply(reservations)
    update_rows(
        Order,
        [batch.parents[parent_id] for parent_id in sorted(changed_parents)],
        ["filled_quantity", "filled_notional", "fees", "status", "reject_reason", "updated_at"],
    )
    if known is not None:
        known.written.update(changed_parents)
    effects.audit += events
    effects.trades.extend(trades)
    effects.orders.update((parent_id, batch.parents[parent_id]) for parent_id in sorted(changed_parents))


def _trade_cost(trade: Trade) -> Decimal:
    return settlement_services.trade_cost(
        direction=trade.direction, quantity=trade.quantity, price=trade.price, fee=trade.fee
    )


def _trade(*, child: ChildOrder, execution: Execution, pool: Pool, role: str) -> Trade:
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
    halts: kill_switch.HaltSnapshot,
    events: list[OrderEvent],
    effects: Effects,
    may_reroute: bool,
) -> None:
    """Decide what becomes of a child submitted in this batch: filled, resting, re-routed, or done."""
    pool = book.pool
    if child.remaining == 0:
        transition(child, ChildStatus.FILLED, actor=pool.name, events=events)
        return
    if child.filled_quantity:
        transition(child, ChildStatus.PARTIALLY_FILLED, actor=pool.name, events=events)
    if result.rested_quantity:
        return  # resting at the venue
    order = child.parent
    target = None
    if may_reroute:
        can_rest = order.order_type == OrderType.LIMIT and order.time_in_force in (TimeInForce.DAY, TimeInForce.GTC)
        halted = halts.halted_pool_ids
        target = router.next_lit_venue(
            side=order.direction,
            tried=child.venues_tried,
            lit=venues(PoolKind.LIT, halted=halted),
            depth=depth(order, halted=halted),
            can_rest=can_rest,
        )
    if target is None:
        transition(
            child,
            ChildStatus.CANCELLED,
            actor=pool.name,
            events=events,
            reason=f"{result.cancelled_quantity} unfilled at {pool.name}, no other venue to try",
        )
        return
    venue, reason = target
    child.pool_id = venue.pool_id
    child.attempt += 1
    child.venues_tried = [*child.venues_tried, venue.name]
    child.route_reason = reason
    child.venue_time_in_force = router.venue_time_in_force(
        parent_time_in_force=order.time_in_force, is_market=order.order_type == OrderType.MARKET, dark=False
    )
    events.append(
        OrderEvent(
            order_id=child.parent_id,
            child=child,
            kind=EventKind.REROUTED,
            actor="router",
            detail={"from": pool.name, "exchange": venue.name, "quantity": child.remaining, "reason": reason},
        )
    )
    effects.books[(venue.pool_id, order.ticker_id)] = "lit"


def parent_status_after_fills(order: Order, *, has_open_children: bool) -> str:
    if order.filled_quantity == order.quantity:
        return OrderStatus.FILLED
    if not has_open_children:
        # Every child ended (IOC/Market remainders, nowhere left to route) short of the full quantity.
        return OrderStatus.CANCELLED
    if order.filled_quantity:
        return OrderStatus.PARTIALLY_FILLED
    return order.status


def books_drain_now(books: dict[tuple[int, int], str]) -> None:
    """After a commit that sent children to these books: match them right here when a book is free,
    else leave them to its task (sent now). Never raises: whatever fails here, the task still runs.
    """
    from orders import tasks

    for (pool_id, ticker_id), queue in books.items():
        try:
            done = book_match(pool_id=pool_id, ticker_id=ticker_id, wait=False, peek=False)
        except Exception:
            done = None
        if done is None:
            tasks.match_book.apply_async(args=(pool_id, ticker_id), queue=queue)
