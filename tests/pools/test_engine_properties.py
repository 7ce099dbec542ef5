"""Property tests: the engines against a deliberately naive reference model.

The reference re-sorts a flat list on every submit, which is slow but obviously
correct, so any disagreement points at the optimised book structures.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pools.engine import (
    DarkBook,
    IncomingOrder,
    LitBook,
    MatchResult,
    RestingOrder,
    Side,
    TimeInForce,
    midpoint,
)

BUY = Side.BUY
SELL = Side.SELL
RESTS = (TimeInForce.DAY, TimeInForce.GTC)

Row = tuple[int, Side, Decimal, int, int]

# Cent grid around 100 narrow enough that orders cross often.
cents = st.integers(min_value=9995, max_value=10005).map(lambda c: Decimal(c).scaleb(-2))
# Midpoints on the half-cent grid, printed with four decimals like midpoint().
mids = st.none() | st.integers(min_value=19990, max_value=20010).map(lambda h: Decimal(h * 50).scaleb(-4))


@dataclass(frozen=True)
class Spec:
    side: Side
    price: Decimal | None
    quantity: int
    time_in_force: TimeInForce


specs = st.builds(
    Spec,
    side=st.sampled_from(Side),
    price=st.none() | cents | cents,  # limit orders twice as likely as market
    quantity=st.integers(min_value=1, max_value=500),
    time_in_force=st.sampled_from(TimeInForce),
)
# ("submit", spec, midpoint) or ("cancel", pick, None); pick selects a known id.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), specs, mids),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=10**6), mids),
    ),
    max_size=60,
)


@st.composite
def initial_lit_orders(draw: st.DrawFn) -> list[RestingOrder]:
    # Bids strictly below asks: the constructor trusts its input is uncrossed.
    count = draw(st.integers(min_value=0, max_value=12))
    sequences = draw(
        st.lists(
            st.integers(min_value=0, max_value=999),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    orders = []
    for position, sequence in enumerate(sequences):
        side = draw(st.sampled_from(Side))
        low, high = (9995, 9999) if side is BUY else (10000, 10005)
        cent = draw(st.integers(min_value=low, max_value=high))
        quantity = draw(st.integers(min_value=1, max_value=500))
        orders.append(RestingOrder(100_000 + position, side, Decimal(cent).scaleb(-2), quantity, sequence))
    return orders


@st.composite
def initial_dark_orders(draw: st.DrawFn) -> list[RestingOrder]:
    # A dark book may legitimately hold crossed interest, so no price split.
    count = draw(st.integers(min_value=0, max_value=12))
    sequences = draw(
        st.lists(
            st.integers(min_value=0, max_value=999),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    # Ids drawn independently of sequences (and below the ids run() assigns) so
    # that id order disagrees with time priority and a mix-up shows.
    order_ids = draw(
        st.lists(
            st.integers(min_value=1, max_value=999),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    return [
        RestingOrder(
            order_id,
            draw(st.sampled_from(Side)),
            draw(cents),
            draw(st.integers(min_value=1, max_value=500)),
            sequence,
        )
        for order_id, sequence in zip(order_ids, sequences, strict=True)
    ]


# --- reference model ---------------------------------------------------------------


@dataclass
class RefOrder:
    order_id: int
    side: Side
    price: Decimal
    quantity: int
    sequence: int

    def row(self) -> Row:
        return (self.order_id, self.side, self.price, self.quantity, self.sequence)


@dataclass
class Reference:
    dark: bool
    orders: list[RefOrder] = field(default_factory=list)

    def lit_priority(self, order: RefOrder) -> tuple[Decimal, int, int]:
        price = -order.price if order.side is BUY else order.price
        return (price, order.sequence, order.order_id)

    def eligible(self, spec: Spec, mid: Decimal | None) -> list[RefOrder]:
        contra = [o for o in self.orders if o.side is not spec.side]
        if not self.dark:
            if spec.price is not None:
                limit = spec.price
                contra = [o for o in contra if (o.price <= limit if spec.side is BUY else o.price >= limit)]
            return sorted(contra, key=self.lit_priority)
        if mid is None:
            return []
        if spec.price is not None and (mid > spec.price if spec.side is BUY else mid < spec.price):
            return []
        contra = [o for o in contra if (o.price >= mid if o.side is BUY else o.price <= mid)]
        return sorted(contra, key=lambda o: (o.sequence, o.order_id))

    def submit(
        self, order_id: int, spec: Spec, mid: Decimal | None, sequence: int
    ) -> tuple[list[tuple[int, Decimal, int]], int, int]:
        eligible = self.eligible(spec, mid)
        remaining = spec.quantity
        if spec.time_in_force is TimeInForce.FOK and (sum(o.quantity for o in eligible) < remaining):
            return [], 0, remaining
        fills = []
        for maker in eligible:
            if not remaining:
                break
            traded = min(remaining, maker.quantity)
            maker.quantity -= traded
            remaining -= traded
            price = mid if self.dark else maker.price
            assert price is not None
            fills.append((maker.order_id, price, traded))
        self.orders = [o for o in self.orders if o.quantity]
        if remaining and spec.price is not None and spec.time_in_force in RESTS:
            self.orders.append(RefOrder(order_id, spec.side, spec.price, remaining, sequence))
            return fills, remaining, 0
        return fills, 0, remaining

    def cancel(self, order_id: int) -> int:
        for order in self.orders:
            if order.order_id == order_id:
                self.orders.remove(order)
                return order.quantity
        return 0

    def rows(self) -> list[Row]:
        key = self.lit_priority_row if not self.dark else self.dark_priority_row
        return [o.row() for o in sorted(self.orders, key=key)]

    def lit_priority_row(self, order: RefOrder) -> tuple[int, Decimal, int, int]:
        return (0 if order.side is BUY else 1, *self.lit_priority(order))

    def dark_priority_row(self, order: RefOrder) -> tuple[int, int, int]:
        return (0 if order.side is BUY else 1, order.sequence, order.order_id)


# --- independent bookkeeping -------------------------------------------------------


@dataclass
class Ledger:
    """Per-order totals accumulated only from what the engine reports."""

    quantity: dict[int, int] = field(default_factory=dict)
    rested: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    maker_filled: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    cancelled_resting: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def expected_open(self, order_id: int) -> int:
        return self.rested[order_id] - self.maker_filled[order_id] - self.cancelled_resting[order_id]


def rows(book: LitBook | DarkBook) -> list[Row]:
    return [(o.order_id, o.side, o.price, o.quantity, o.sequence) for o in book.resting()]


def within(price: Decimal, side: Side, limit: Decimal | None) -> bool:
    """Whether a ``side`` order limited at ``limit`` accepts ``price``."""
    if limit is None:
        return True
    return price <= limit if side is BUY else price >= limit


def check_result(result: MatchResult, incoming: IncomingOrder, before: dict[int, Row], ledger: Ledger) -> None:
    assert sum(f.quantity for f in result.fills) == result.filled_quantity
    assert result.filled_quantity <= incoming.quantity
    assert result.filled_quantity + result.rested_quantity + result.cancelled_quantity == incoming.quantity
    assert all(f.quantity > 0 for f in result.fills)
    assert all(f.taker_order_id == incoming.order_id for f in result.fills)
    if incoming.price is None or incoming.time_in_force not in RESTS:
        assert result.rested_quantity == 0
    if incoming.time_in_force is TimeInForce.FOK:
        assert result.filled_quantity in (0, incoming.quantity)
    assert set(result.maker_remaining) == {f.maker_order_id for f in result.fills}
    for fill in result.fills:
        maker = before[fill.maker_order_id]
        assert maker[1] is not incoming.side
        ledger.maker_filled[fill.maker_order_id] += fill.quantity
        # Over-fill check for makers, against totals the test kept itself.
        assert ledger.maker_filled[fill.maker_order_id] <= ledger.rested[maker[0]]
    for maker_id, remaining in result.maker_remaining.items():
        assert remaining == ledger.expected_open(maker_id)
        assert remaining >= 0


def check_book(book: LitBook | DarkBook, ledger: Ledger) -> None:
    current = rows(book)
    assert len(book) == len(current)
    assert all(row[3] > 0 for row in current)
    for row in current:
        assert row[3] == ledger.expected_open(row[0])
    # Quantity conserved: what rests is what was rested minus maker fills/cancels.
    assert sum(row[3] for row in current) == (
        sum(ledger.rested.values()) - sum(ledger.maker_filled.values()) - sum(ledger.cancelled_resting.values())
    )


def run(
    book: LitBook | DarkBook,
    reference: Reference,
    initial: list[RestingOrder],
    ops: list[tuple[str, object, Decimal | None]],
) -> None:
    ledger = Ledger()
    for order in initial:
        ledger.quantity[order.order_id] = order.quantity
        ledger.rested[order.order_id] = order.quantity
        reference.orders.append(RefOrder(order.order_id, order.side, order.price, order.quantity, order.sequence))
    known = [order.order_id for order in initial]
    sequence = 1000

    for kind, payload, mid in ops:
        if kind == "cancel":
            assert isinstance(payload, int)
            if not known:
                continue
            order_id = known[payload % len(known)]
            removed = book.cancel(order_id)
            assert removed == reference.cancel(order_id)
            assert removed == ledger.expected_open(order_id)
            ledger.cancelled_resting[order_id] += removed
            check_book(book, ledger)
            continue

        assert isinstance(payload, Spec)
        spec = payload
        sequence += 1
        # Ids run against time so that confusing the two breaks priority checks.
        order_id = 1_000_000 - sequence
        incoming = IncomingOrder(order_id, spec.side, spec.price, spec.quantity, spec.time_in_force)
        snapshot = rows(book)
        before = {row[0]: row for row in snapshot}
        check_queries(book, reference, spec, mid)

        if spec.price is None and spec.time_in_force is TimeInForce.GTC:
            with pytest.raises(ValueError, match="GTC"):
                submit(book, incoming, mid, sequence)
            assert rows(book) == snapshot
            continue

        result = submit(book, incoming, mid, sequence)
        # The caller's object is never altered.
        assert incoming == IncomingOrder(order_id, spec.side, spec.price, spec.quantity, spec.time_in_force)
        known.append(order_id)
        ledger.quantity[order_id] = spec.quantity
        ledger.rested[order_id] = result.rested_quantity
        check_result(result, incoming, before, ledger)

        expected_fills, expected_rested, expected_cancelled = reference.submit(order_id, spec, mid, sequence)
        assert [(f.maker_order_id, f.price, f.quantity) for f in result.fills] == expected_fills
        assert result.rested_quantity == expected_rested
        assert result.cancelled_quantity == expected_cancelled

        if isinstance(book, LitBook):
            check_lit_submit(book, incoming, result, snapshot)
        else:
            check_dark_submit(incoming, result, mid, before)
        check_book(book, ledger)
        assert rows(book) == reference.rows()


def check_queries(book: LitBook | DarkBook, reference: Reference, spec: Spec, mid: Decimal | None) -> None:
    expected = sum(o.quantity for o in reference.eligible(spec, mid))
    if isinstance(book, DarkBook):
        assert book.fillable_quantity(spec.side, spec.price, midpoint=mid) == expected
        return
    assert book.fillable_quantity(spec.side, spec.price) == expected
    for side in Side:
        levels: dict[Decimal, int] = defaultdict(int)
        for order in reference.orders:
            if order.side is side:
                levels[order.price] += order.quantity
        best_first = sorted(levels.items(), reverse=side is BUY)
        assert book.depth(side, 3) == best_first[:3]
        best = best_first[0][0] if best_first else None
        assert (book.best_bid() if side is BUY else book.best_ask()) == best


def submit(
    book: LitBook | DarkBook,
    incoming: IncomingOrder,
    mid: Decimal | None,
    sequence: int,
) -> MatchResult:
    if isinstance(book, LitBook):
        return book.submit(incoming, sequence=sequence)
    return book.submit(incoming, midpoint=mid, sequence=sequence)


def check_lit_submit(book: LitBook, incoming: IncomingOrder, result: MatchResult, snapshot: list[Row]) -> None:
    assert not book.is_crossed()
    before = {row[0]: row for row in snapshot}
    for fill in result.fills:
        assert fill.price == before[fill.maker_order_id][2]
        assert within(fill.price, incoming.side, incoming.price)
    # Price-time priority: the makers hit are a prefix of the eligible contra orders
    # sorted by (price priority, sequence), and all but the last were exhausted.
    contra = [row for row in snapshot if row[1] is not incoming.side and within(row[2], incoming.side, incoming.price)]
    sign = 1 if incoming.side is BUY else -1
    contra.sort(key=lambda row: (sign * row[2], row[4]))
    hit = [fill.maker_order_id for fill in result.fills]
    assert hit == [row[0] for row in contra[: len(hit)]]
    for fill in result.fills[:-1]:
        assert fill.quantity == before[fill.maker_order_id][3]


def check_dark_submit(
    incoming: IncomingOrder,
    result: MatchResult,
    mid: Decimal | None,
    before: dict[int, Row],
) -> None:
    if mid is None:
        assert result.fills == []
    for fill in result.fills:
        assert fill.price == mid
        assert within(fill.price, incoming.side, incoming.price)
        maker = before[fill.maker_order_id]
        assert within(fill.price, maker[1], maker[2])
    # Time priority regardless of price among the makers that accept the mid.
    sequences = [before[fill.maker_order_id][4] for fill in result.fills]
    assert sequences == sorted(sequences)


@settings(max_examples=200, deadline=None)
@given(initial=initial_lit_orders(), ops=operations)
def test_lit_book_matches_reference_and_keeps_invariants(
    initial: list[RestingOrder], ops: list[tuple[str, object, Decimal | None]]
) -> None:
    # given
    book = LitBook(initial)
    # when / then: every step is checked inside run()
    run(book, Reference(dark=False), initial, ops)


@settings(max_examples=200, deadline=None)
@given(initial=initial_dark_orders(), ops=operations)
def test_dark_book_matches_reference_and_keeps_invariants(
    initial: list[RestingOrder], ops: list[tuple[str, object, Decimal | None]]
) -> None:
    # given
    book = DarkBook(initial)
    # when / then: every step is checked inside run()
    run(book, Reference(dark=True), initial, ops)


@settings(max_examples=200, deadline=None)
@given(initial=initial_lit_orders())
def test_lit_book_loads_in_price_time_order_regardless_of_input_order(
    initial: list[RestingOrder],
) -> None:
    # given
    reference = Reference(dark=False)
    reference.orders = [RefOrder(o.order_id, o.side, o.price, o.quantity, o.sequence) for o in initial]

    # when
    loaded = LitBook(reversed(initial))
    added = LitBook()
    for order in initial:
        added.add(order)

    # then
    assert rows(loaded) == reference.rows()
    assert rows(added) == reference.rows()
    assert not loaded.is_crossed()


@settings(max_examples=200, deadline=None)
@given(
    bid=st.integers(min_value=1, max_value=10**9),
    spread=st.integers(min_value=0, max_value=10**6),
    scale=st.integers(min_value=0, max_value=6),
)
def test_midpoint_is_half_up_rounding_of_the_exact_mean(bid: int, spread: int, scale: int) -> None:
    # given: prices as integers of 10**-scale, so the exact mean is known
    ask = bid + spread
    best_bid = Decimal(bid).scaleb(-scale)
    best_ask = Decimal(ask).scaleb(-scale)

    # when
    mid = midpoint(best_bid, best_ask)

    # then
    if spread == 0:
        assert mid is None
        return
    # mean in units of 0.0001 is (bid + ask) * 10**4 / (2 * 10**scale), rounded half up
    numerator = (bid + ask) * 10**4
    denominator = 2 * 10**scale
    expected_units = (2 * numerator + denominator) // (2 * denominator)
    assert mid == Decimal(expected_units).scaleb(-4)
    assert mid.as_tuple().exponent == -4
