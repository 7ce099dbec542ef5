"""Matching engines of the simulated trading venues.

Deliberately free of Django, the ORM and any I/O: a venue's book is rebuilt from
the database for every match and the engine is also benchmarked in-process, so it
has to be cheap to build, cheap to run and testable without a database.

Money and prices are ``Decimal`` throughout; comparisons between Decimals are exact
and independent of the active decimal context, and the only arithmetic (the
midpoint) runs in a private context so a caller's context cannot change results.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum

__all__ = [
    "DarkBook",
    "Fill",
    "IncomingOrder",
    "LitBook",
    "MatchResult",
    "RestingOrder",
    "Side",
    "TimeInForce",
    "midpoint",
]


class Side(StrEnum):
    BUY = "Buy"
    SELL = "Sell"


class TimeInForce(StrEnum):
    DAY = "Day"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


@dataclass(slots=True)
class RestingOrder:
    """An order resting in a book.

    ``order_id`` is an opaque key chosen by the caller (typically the primary key
    of the venue's book order row); ``sequence`` gives time priority, lower first.
    """

    order_id: int
    side: Side
    price: Decimal
    quantity: int
    sequence: int


@dataclass(slots=True)
class IncomingOrder:
    """An order arriving at a venue; ``price`` None means a Market order."""

    order_id: int
    side: Side
    price: Decimal | None
    quantity: int
    time_in_force: TimeInForce


@dataclass(frozen=True, slots=True)
class Fill:
    maker_order_id: int
    taker_order_id: int
    price: Decimal
    quantity: int


@dataclass(slots=True)
class MatchResult:
    """Outcome of one submit.

    Invariant: ``filled_quantity + rested_quantity + cancelled_quantity`` equals the
    incoming quantity. ``maker_remaining`` maps every maker touched to its remaining
    quantity (0 means fully filled and removed from the book), so the caller can
    persist the book without diffing it.
    """

    fills: list[Fill]
    filled_quantity: int
    rested_quantity: int
    cancelled_quantity: int
    maker_remaining: dict[int, int]


# Private context: prec is generous so the sum of two prices is always exact and
# the only rounding is the explicit quantize to the venue's 0.0001 tick.
_MID_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
_MID_QUANTUM = Decimal("0.0001")


def midpoint(best_bid: Decimal | None, best_ask: Decimal | None) -> Decimal | None:
    """NBBO midpoint quantized to 0.0001 (ROUND_HALF_UP).

    None when either side is missing or the market is locked/crossed, because a
    midpoint of an inverted market is not a fair reference price.
    """
    if best_bid is None or best_ask is None or best_bid >= best_ask:
        return None
    total = _MID_CONTEXT.add(best_bid, best_ask)
    return _MID_CONTEXT.divide(total, 2).quantize(_MID_QUANTUM, rounding=ROUND_HALF_UP, context=_MID_CONTEXT)


def _check_price(price: object) -> Decimal:
    # A float price would silently leak binary rounding into fills, so refuse it
    # outright rather than converting.
    if not isinstance(price, Decimal):
        raise TypeError(f"price must be a Decimal, got {type(price).__name__}")
    # is_finite() first: ordering comparisons on NaN raise InvalidOperation.
    if not price.is_finite() or price <= 0:
        raise ValueError(f"price must be a positive finite Decimal, got {price}")
    return price


def _as_side(side: Side) -> Side:
    # Enum lookup by value is slow next to an identity check, and this runs for
    # every order loaded; plain strings ("Buy") from the ORM still get coerced.
    return side if side.__class__ is Side else Side(side)


def _as_time_in_force(time_in_force: TimeInForce) -> TimeInForce:
    if time_in_force.__class__ is TimeInForce:
        return time_in_force
    return TimeInForce(time_in_force)


def _check_quantity(quantity: int) -> None:
    if quantity <= 0:
        raise ValueError(f"quantity must be positive, got {quantity}")


def _priority(order: RestingOrder) -> tuple[int, int]:
    # Ties on sequence are broken by order_id so priority never depends on the
    # order in which rows happened to come back from the database.
    return (order.sequence, order.order_id)


class _Level:
    """All resting orders at one price on one side, in time priority."""

    __slots__ = ("key", "orders", "price", "quantity")

    def __init__(self, key: Decimal, price: Decimal) -> None:
        self.key = key
        self.price = price
        self.orders: deque[RestingOrder] = deque()
        # Kept in step with the orders so depth/fillable queries never walk orders.
        self.quantity = 0


class _BookSide:
    """One side of a book: price levels plus their sort keys.

    Keys are ascending with the *best* level last (bids keyed by price, asks by
    negated price), so consuming the top of book is an O(1) ``list.pop()`` and
    "levels at least as good as price P" is always the suffix starting at
    ``bisect_left(keys, key(P))`` for both sides.
    """

    __slots__ = ("is_bid", "keys", "levels")

    def __init__(self, side: Side) -> None:
        self.is_bid = side is Side.BUY
        self.levels: dict[Decimal, _Level] = {}
        self.keys: list[Decimal] = []

    def key(self, price: Decimal) -> Decimal:
        # copy_negate is exact and context-free, unlike unary minus.
        return price if self.is_bid else price.copy_negate()

    def insert(self, order: RestingOrder) -> None:
        key = self.key(order.price)
        level = self.levels.get(key)
        if level is None:
            level = _Level(key, order.price)
            self.levels[key] = level
            insort(self.keys, key)
        orders = level.orders
        rank = _priority(order)
        if not orders or _priority(orders[-1]) < rank:
            orders.append(order)  # the normal case: newest order goes to the back
        else:
            position = len(orders)
            while position and _priority(orders[position - 1]) > rank:
                position -= 1
            orders.insert(position, order)
        level.quantity += order.quantity

    def remove(self, order: RestingOrder) -> None:
        level = self.levels[self.key(order.price)]
        orders = level.orders
        # Identity, not ==: dataclass equality compares every field and is slower.
        for position, candidate in enumerate(orders):
            if candidate is order:
                del orders[position]
                break
        level.quantity -= order.quantity
        if not orders:
            self.drop_level(level)

    def drop_level(self, level: _Level) -> None:
        del self.levels[level.key]
        del self.keys[bisect_left(self.keys, level.key)]

    def best_price(self) -> Decimal | None:
        if not self.keys:
            return None
        return self.levels[self.keys[-1]].price

    def start_at(self, price: Decimal | None) -> int:
        """Index of the worst level still at least as good as ``price``."""
        if price is None:
            return 0
        return bisect_left(self.keys, self.key(price))

    def quantity_from(self, start: int, cap: int | None = None) -> int:
        # Walk best-first so an FOK check can stop as soon as it has enough.
        total = 0
        keys = self.keys
        levels = self.levels
        for position in range(len(keys) - 1, start - 1, -1):
            total += levels[keys[position]].quantity
            if cap is not None and total >= cap:
                break
        return total

    def levels_best_first(self) -> Iterator[_Level]:
        levels = self.levels
        for key in reversed(self.keys):
            yield levels[key]


class _Book:
    """State and bookkeeping shared by the lit and the dark book."""

    __slots__ = ("_asks", "_bids", "_index")

    def __init__(self, orders: Iterable[RestingOrder] = ()) -> None:
        self._bids = _BookSide(Side.BUY)
        self._asks = _BookSide(Side.SELL)
        self._index: dict[int, RestingOrder] = {}
        # Loading in priority order makes every insert an append; one sort per
        # rebuild is far cheaper than mid-deque inserts.
        for order in sorted(orders, key=_priority):
            self.add(order)

    def add(self, order: RestingOrder) -> None:
        """Rest ``order`` without matching it.

        The book keeps its own copy: fills reduce quantities in place, and doing
        that to the caller's objects would corrupt a list reused to build another
        book (e.g. a benchmark or a retry).
        """
        side = _as_side(order.side)
        price = _check_price(order.price)
        _check_quantity(order.quantity)
        if order.order_id in self._index:
            raise ValueError(f"order {order.order_id} is already resting")
        own = RestingOrder(order.order_id, side, price, order.quantity, order.sequence)
        self._index[own.order_id] = own
        self._own_side(side).insert(own)

    def cancel(self, order_id: int) -> int:
        order = self._index.pop(order_id, None)
        if order is None:
            return 0
        self._own_side(order.side).remove(order)
        return order.quantity

    def __len__(self) -> int:
        return len(self._index)

    def _own_side(self, side: Side) -> _BookSide:
        return self._bids if side is Side.BUY else self._asks

    def _contra_side(self, side: Side) -> _BookSide:
        return self._asks if side is Side.BUY else self._bids

    def _validate(self, incoming: IncomingOrder) -> tuple[Side, TimeInForce, Decimal | None]:
        side = _as_side(incoming.side)
        time_in_force = _as_time_in_force(incoming.time_in_force)
        price = incoming.price
        if price is None:
            if time_in_force is TimeInForce.GTC:
                raise ValueError("a Market order cannot be GTC")
        else:
            _check_price(price)
        _check_quantity(incoming.quantity)
        if incoming.order_id in self._index:
            raise ValueError(f"order {incoming.order_id} is already resting")
        return side, time_in_force, price

    def _finish(
        self,
        incoming: IncomingOrder,
        side: Side,
        time_in_force: TimeInForce,
        price: Decimal | None,
        sequence: int,
        fills: list[Fill],
        maker_remaining: dict[int, int],
        remaining: int,
    ) -> MatchResult:
        rested = 0
        # Only limit orders that are allowed to wait rest; a Market order has no
        # price to rest at, so Market+Day behaves like IOC.
        if remaining and price is not None and time_in_force in (TimeInForce.DAY, TimeInForce.GTC):
            order = RestingOrder(incoming.order_id, side, price, remaining, sequence)
            self._index[order.order_id] = order
            self._own_side(side).insert(order)
            rested = remaining
        return MatchResult(
            fills=fills,
            filled_quantity=incoming.quantity - remaining,
            rested_quantity=rested,
            cancelled_quantity=remaining - rested,
            maker_remaining=maker_remaining,
        )


class LitBook(_Book):
    """Continuous limit order book with price-time priority.

    Trades print at the resting (maker) order's price.
    """

    __slots__ = ()

    def submit(self, incoming: IncomingOrder, *, sequence: int) -> MatchResult:
        side, time_in_force, price = self._validate(incoming)
        quantity = incoming.quantity
        contra = self._contra_side(side)
        if time_in_force is TimeInForce.FOK and contra.quantity_from(contra.start_at(price), quantity) < quantity:
            # Checked up front so a failed FOK leaves the book untouched.
            return MatchResult([], 0, 0, quantity, {})

        fills: list[Fill] = []
        maker_remaining: dict[int, int] = {}
        remaining = quantity
        keys = contra.keys
        levels = contra.levels
        index = self._index
        taker_id = incoming.order_id
        # In key space "within the limit" is simply key >= stop (see _BookSide).
        stop = None if price is None else contra.key(price)
        while remaining and keys:
            top = keys[-1]
            if stop is not None and top < stop:
                break
            level = levels[top]
            orders = level.orders
            while remaining and orders:
                maker = orders[0]
                traded = min(remaining, maker.quantity)
                # In place, so a partially filled maker keeps its queue position.
                maker.quantity -= traded
                level.quantity -= traded
                remaining -= traded
                fills.append(Fill(maker.order_id, taker_id, maker.price, traded))
                maker_remaining[maker.order_id] = maker.quantity
                if not maker.quantity:
                    orders.popleft()
                    del index[maker.order_id]
            if not orders:
                keys.pop()
                del levels[top]

        return self._finish(incoming, side, time_in_force, price, sequence, fills, maker_remaining, remaining)

    def best_bid(self) -> Decimal | None:
        return self._bids.best_price()

    def best_ask(self) -> Decimal | None:
        return self._asks.best_price()

    def depth(self, side: Side, levels: int) -> list[tuple[Decimal, int]]:
        """Aggregated ``(price, quantity)`` of ``side``'s best ``levels`` levels."""
        result: list[tuple[Decimal, int]] = []
        if levels <= 0:
            return result
        for level in self._own_side(_as_side(side)).levels_best_first():
            result.append((level.price, level.quantity))
            if len(result) == levels:
                break
        return result

    def fillable_quantity(self, side: Side, price: Decimal | None) -> int:
        """How much an incoming ``side`` order limited at ``price`` could fill now."""
        if price is not None:
            _check_price(price)
        contra = self._contra_side(_as_side(side))
        return contra.quantity_from(contra.start_at(price))

    def resting(self) -> list[RestingOrder]:
        """Bids best-first then asks best-first, time order within a level.

        Copies, so callers cannot alter the book through the returned objects.
        """
        return [
            RestingOrder(o.order_id, o.side, o.price, o.quantity, o.sequence)
            for book_side in (self._bids, self._asks)
            for level in book_side.levels_best_first()
            for o in level.orders
        ]

    def is_crossed(self) -> bool:
        bid = self._bids.best_price()
        ask = self._asks.best_price()
        return bid is not None and ask is not None and bid >= ask


class DarkBook(_Book):
    """Hidden book: nothing displayed.

    An incoming order trades with resting contra orders at the lit NBBO midpoint,
    only when the midpoint is inside both limits (buy limit >= mid, sell limit <=
    mid; Market always accepts the mid). Eligible resting contra orders are matched
    in time priority (sequence), not by price: every eligible maker gets the same
    price, so price priority would only reward over-aggressive limits.
    """

    __slots__ = ()

    def submit(self, incoming: IncomingOrder, *, midpoint: Decimal | None, sequence: int) -> MatchResult:
        side, time_in_force, price = self._validate(incoming)
        quantity = incoming.quantity
        start = self._eligible_start(side, price, midpoint)
        contra = self._contra_side(side)
        if time_in_force is TimeInForce.FOK and (start is None or contra.quantity_from(start, quantity) < quantity):
            return MatchResult([], 0, 0, quantity, {})

        fills: list[Fill] = []
        maker_remaining: dict[int, int] = {}
        remaining = quantity
        if start is not None and midpoint is not None:
            index = self._index
            taker_id = incoming.order_id
            levels = contra.levels
            keys = contra.keys
            # Eligible makers are the contra levels at or through the mid; merge
            # their queues by (sequence, order_id). order_id is unique in the book,
            # so the heap never has to compare the _Level objects.
            heap = [
                (level.orders[0].sequence, level.orders[0].order_id, level)
                for level in (levels[key] for key in keys[start:])
            ]
            heapq.heapify(heap)
            while remaining and heap:
                level = heap[0][2]
                orders = level.orders
                maker = orders[0]
                traded = min(remaining, maker.quantity)
                maker.quantity -= traded
                level.quantity -= traded
                remaining -= traded
                fills.append(Fill(maker.order_id, taker_id, midpoint, traded))
                maker_remaining[maker.order_id] = maker.quantity
                if maker.quantity:
                    break  # only possible once the incoming order is exhausted
                orders.popleft()
                del index[maker.order_id]
                if orders:
                    heapq.heapreplace(heap, (orders[0].sequence, orders[0].order_id, level))
                else:
                    heapq.heappop(heap)
                    contra.drop_level(level)

        return self._finish(incoming, side, time_in_force, price, sequence, fills, maker_remaining, remaining)

    def fillable_quantity(self, side: Side, price: Decimal | None, *, midpoint: Decimal | None) -> int:
        if price is not None:
            _check_price(price)
        side = _as_side(side)
        start = self._eligible_start(side, price, midpoint)
        if start is None:
            return 0
        return self._contra_side(side).quantity_from(start)

    def resting(self) -> list[RestingOrder]:
        """Buys then sells, each in dark priority order (sequence, then order_id).

        Copies, so callers cannot alter the book through the returned objects.
        """
        result: list[RestingOrder] = []
        for book_side in (self._bids, self._asks):
            orders = [o for level in book_side.levels.values() for o in level.orders]
            orders.sort(key=_priority)
            result.extend(RestingOrder(o.order_id, o.side, o.price, o.quantity, o.sequence) for o in orders)
        return result

    def _eligible_start(self, side: Side, price: Decimal | None, mid: Decimal | None) -> int | None:
        """First contra key index whose makers accept ``mid``; None if no trade."""
        if mid is None:
            return None
        _check_price(mid)
        if price is not None and (mid > price if side is Side.BUY else mid < price):
            return None
        # A resting buy accepts the mid when its price >= mid and a resting sell
        # when its price <= mid: both are "at least as good as mid" for that side.
        return self._contra_side(side).start_at(mid)
