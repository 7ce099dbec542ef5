from decimal import Decimal

import pytest

from pools.engine import (
    DarkBook,
    Fill,
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
DAY = TimeInForce.DAY
GTC = TimeInForce.GTC
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK


def D(value: str) -> Decimal:
    return Decimal(value)


def resting(order_id: int, side: Side, price: str, quantity: int, sequence: int | None = None) -> RestingOrder:
    return RestingOrder(
        order_id=order_id,
        side=side,
        price=D(price),
        quantity=quantity,
        sequence=order_id if sequence is None else sequence,
    )


def limit(order_id: int, side: Side, price: str, quantity: int, tif: TimeInForce = DAY) -> IncomingOrder:
    return IncomingOrder(order_id, side, D(price), quantity, tif)


def market(order_id: int, side: Side, quantity: int, tif: TimeInForce = IOC) -> IncomingOrder:
    return IncomingOrder(order_id, side, None, quantity, tif)


def snapshot(book: LitBook | DarkBook) -> list[tuple[int, Side, Decimal, int, int]]:
    return [(o.order_id, o.side, o.price, o.quantity, o.sequence) for o in book.resting()]


# --- LitBook: priority and pricing -------------------------------------------------


def test_lit_buy_takes_best_ask_first() -> None:
    # given
    book = LitBook(
        [
            resting(1, SELL, "100.02", 100),
            resting(2, SELL, "100.01", 100),
            resting(3, SELL, "100.03", 100),
        ]
    )

    # when
    result = book.submit(limit(10, BUY, "100.03", 150), sequence=10)

    # then
    assert result.fills == [
        Fill(maker_order_id=2, taker_order_id=10, price=D("100.01"), quantity=100),
        Fill(maker_order_id=1, taker_order_id=10, price=D("100.02"), quantity=50),
    ]
    assert result.maker_remaining == {2: 0, 1: 50}


def test_lit_sell_takes_best_bid_first() -> None:
    # given
    book = LitBook(
        [
            resting(1, BUY, "99.98", 100),
            resting(2, BUY, "99.99", 100),
        ]
    )

    # when
    result = book.submit(limit(10, SELL, "99.98", 150), sequence=10)

    # then
    assert [(f.maker_order_id, f.price, f.quantity) for f in result.fills] == [
        (2, D("99.99"), 100),
        (1, D("99.98"), 50),
    ]


def test_lit_time_priority_at_same_price() -> None:
    # given: loaded out of time order on purpose
    book = LitBook(
        [
            resting(1, SELL, "100.00", 100, sequence=7),
            resting(2, SELL, "100.00", 100, sequence=3),
            resting(3, SELL, "100.00", 100, sequence=5),
        ]
    )

    # when
    result = book.submit(limit(10, BUY, "100.00", 250), sequence=10)

    # then
    assert [(f.maker_order_id, f.quantity) for f in result.fills] == [
        (2, 100),
        (3, 100),
        (1, 50),
    ]


def test_lit_equal_sequence_is_broken_by_order_id() -> None:
    # given
    book = LitBook(
        [
            resting(9, SELL, "100.00", 10, sequence=1),
            resting(4, SELL, "100.00", 10, sequence=1),
        ]
    )

    # when
    result = book.submit(limit(10, BUY, "100.00", 10), sequence=2)

    # then
    assert [f.maker_order_id for f in result.fills] == [4]


def test_lit_add_out_of_time_order_keeps_time_priority() -> None:
    # given
    book = LitBook()
    book.add(resting(1, BUY, "99.00", 10, sequence=5))
    book.add(resting(2, BUY, "99.00", 10, sequence=9))

    # when
    book.add(resting(3, BUY, "99.00", 10, sequence=3))
    result = book.submit(market(10, SELL, 25), sequence=10)

    # then
    assert [(f.maker_order_id, f.quantity) for f in result.fills] == [
        (3, 10),
        (1, 10),
        (2, 5),
    ]


def test_lit_trades_at_resting_price_not_taker_limit() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 100)])

    # when
    result = book.submit(limit(10, BUY, "101.50", 100), sequence=10)

    # then
    assert result.fills == [Fill(1, 10, D("100.00"), 100)]


def test_lit_does_not_trade_outside_limit() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.01", 100)])

    # when
    result = book.submit(limit(10, BUY, "100.00", 100), sequence=10)

    # then
    assert result.fills == []
    assert result.rested_quantity == 100
    assert book.best_bid() == D("100.00")
    assert book.best_ask() == D("100.01")


def test_lit_partial_fill_keeps_maker_priority() -> None:
    # given
    book = LitBook(
        [
            resting(1, SELL, "100.00", 100, sequence=1),
            resting(2, SELL, "100.00", 100, sequence=2),
        ]
    )

    # when
    first = book.submit(limit(10, BUY, "100.00", 30), sequence=10)
    second = book.submit(limit(11, BUY, "100.00", 80), sequence=11)

    # then
    assert first.fills == [Fill(1, 10, D("100.00"), 30)]
    assert first.maker_remaining == {1: 70}
    assert second.fills == [
        Fill(1, 11, D("100.00"), 70),
        Fill(2, 11, D("100.00"), 10),
    ]
    assert second.maker_remaining == {1: 0, 2: 90}
    assert snapshot(book) == [(2, SELL, D("100.00"), 90, 2)]


def test_lit_incoming_remainder_rests_with_given_sequence() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 40)])

    # when
    result = book.submit(limit(10, BUY, "100.05", 100), sequence=42)

    # then
    assert result == MatchResult(
        fills=[Fill(1, 10, D("100.00"), 40)],
        filled_quantity=40,
        rested_quantity=60,
        cancelled_quantity=0,
        maker_remaining={1: 0},
    )
    assert snapshot(book) == [(10, BUY, D("100.05"), 60, 42)]


def test_lit_does_not_mutate_caller_objects() -> None:
    # given
    maker = resting(1, SELL, "100.00", 100)
    book = LitBook([maker])
    incoming = limit(10, BUY, "100.00", 150)

    # when
    book.submit(incoming, sequence=10)

    # then
    assert maker.quantity == 100
    assert incoming == limit(10, BUY, "100.00", 150)


# --- LitBook: time in force ----------------------------------------------------------


def test_lit_day_remainder_rests() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 10)])

    # when
    result = book.submit(limit(10, BUY, "100.00", 25, DAY), sequence=10)

    # then
    assert (result.filled_quantity, result.rested_quantity) == (10, 15)
    assert result.cancelled_quantity == 0
    assert book.depth(BUY, 5) == [(D("100.00"), 15)]


def test_lit_gtc_remainder_rests() -> None:
    # given
    book = LitBook()

    # when
    result = book.submit(limit(10, SELL, "100.10", 25, GTC), sequence=10)

    # then
    assert (result.filled_quantity, result.rested_quantity) == (0, 25)
    assert result.cancelled_quantity == 0
    assert snapshot(book) == [(10, SELL, D("100.10"), 25, 10)]


def test_lit_ioc_cancels_remainder() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 10), resting(2, SELL, "100.02", 10)])

    # when
    result = book.submit(limit(10, BUY, "100.01", 25, IOC), sequence=10)

    # then
    assert result.fills == [Fill(1, 10, D("100.00"), 10)]
    assert (result.filled_quantity, result.rested_quantity) == (10, 0)
    assert result.cancelled_quantity == 15
    assert snapshot(book) == [(2, SELL, D("100.02"), 10, 2)]


def test_lit_fok_fills_completely_when_enough_liquidity() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 10), resting(2, SELL, "100.01", 20)])

    # when
    result = book.submit(limit(10, BUY, "100.01", 30, FOK), sequence=10)

    # then
    assert result.fills == [
        Fill(1, 10, D("100.00"), 10),
        Fill(2, 10, D("100.01"), 20),
    ]
    assert result.filled_quantity == 30
    assert result.cancelled_quantity == 0
    assert len(book) == 0


def test_lit_fok_cancels_everything_when_short_and_leaves_book_unchanged() -> None:
    # given: 30 available in total but only 10 within the limit
    book = LitBook([resting(1, SELL, "100.00", 10), resting(2, SELL, "100.02", 20)])
    before = snapshot(book)

    # when
    result = book.submit(limit(10, BUY, "100.01", 30, FOK), sequence=10)

    # then
    assert result == MatchResult([], 0, 0, 30, {})
    assert snapshot(book) == before


def test_lit_market_fok_short_cancels_everything() -> None:
    # given
    book = LitBook([resting(1, BUY, "99.00", 10)])

    # when
    result = book.submit(market(10, SELL, 11, FOK), sequence=10)

    # then
    assert result == MatchResult([], 0, 0, 11, {})
    assert snapshot(book) == [(1, BUY, D("99.00"), 10, 1)]


# --- LitBook: market orders ----------------------------------------------------------


def test_lit_market_sweeps_levels_and_never_rests() -> None:
    # given
    book = LitBook(
        [
            resting(1, SELL, "100.00", 10),
            resting(2, SELL, "100.50", 10),
            resting(3, SELL, "105.00", 10),
        ]
    )

    # when
    result = book.submit(market(10, BUY, 45, DAY), sequence=10)

    # then
    assert result.fills == [
        Fill(1, 10, D("100.00"), 10),
        Fill(2, 10, D("100.50"), 10),
        Fill(3, 10, D("105.00"), 10),
    ]
    assert (result.filled_quantity, result.rested_quantity) == (30, 0)
    assert result.cancelled_quantity == 15
    assert len(book) == 0


def test_lit_market_on_empty_book_is_all_cancelled() -> None:
    # given
    book = LitBook()

    # when
    result = book.submit(market(10, SELL, 100, IOC), sequence=10)

    # then
    assert result == MatchResult([], 0, 0, 100, {})
    assert len(book) == 0


def test_lit_market_gtc_raises() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 10)])

    # when / then
    with pytest.raises(ValueError, match="GTC"):
        book.submit(market(10, BUY, 5, GTC), sequence=10)
    assert snapshot(book) == [(1, SELL, D("100.00"), 10, 1)]


@pytest.mark.parametrize(
    ("incoming", "message"),
    [
        (IncomingOrder(10, BUY, D("100.00"), 0, DAY), "quantity must be positive"),
        (IncomingOrder(10, BUY, D("100.00"), -5, DAY), "quantity must be positive"),
        (IncomingOrder(10, BUY, D("0"), 5, DAY), "positive finite"),
        (IncomingOrder(10, BUY, D("-1.00"), 5, DAY), "positive finite"),
        (IncomingOrder(10, BUY, D("NaN"), 5, DAY), "positive finite"),
        (IncomingOrder(1, BUY, D("99.00"), 5, DAY), "already resting"),
    ],
)
def test_lit_submit_rejects_invalid_orders(incoming: IncomingOrder, message: str) -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 10)])

    # when / then
    with pytest.raises(ValueError, match=message):
        book.submit(incoming, sequence=10)
    assert snapshot(book) == [(1, SELL, D("100.00"), 10, 1)]


def test_lit_rejects_float_price() -> None:
    # given
    book = LitBook()
    incoming = IncomingOrder(10, BUY, 100.0, 5, DAY)  # type: ignore[arg-type]

    # when / then
    with pytest.raises(TypeError):
        book.submit(incoming, sequence=10)


def test_lit_accepts_plain_string_side_and_time_in_force_from_the_database() -> None:
    # given: values as a CharField returns them, not enum members
    book = LitBook([RestingOrder(1, "Sell", D("100.00"), 10, 1)])  # type: ignore[arg-type]
    incoming = IncomingOrder(10, "Buy", D("100.00"), 15, "GTC")  # type: ignore[arg-type]

    # when
    result = book.submit(incoming, sequence=10)

    # then
    assert result.fills == [Fill(1, 10, D("100.00"), 10)]
    assert result.rested_quantity == 5
    assert [o.side for o in book.resting()] == [BUY]
    assert book.resting()[0].side is BUY


def test_lit_add_rejects_duplicate_order_id() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 10)])

    # when / then
    with pytest.raises(ValueError, match="already resting"):
        book.add(resting(1, BUY, "99.00", 10))


# --- LitBook: cancel, depth, queries -------------------------------------------------


def test_lit_cancel_removes_order_and_returns_remaining_quantity() -> None:
    # given
    book = LitBook([resting(1, SELL, "100.00", 100), resting(2, SELL, "100.00", 50)])
    book.submit(limit(10, BUY, "100.00", 30), sequence=10)

    # when
    removed = book.cancel(1)
    missing = book.cancel(1)

    # then
    assert (removed, missing) == (70, 0)
    assert snapshot(book) == [(2, SELL, D("100.00"), 50, 2)]
    assert book.depth(SELL, 5) == [(D("100.00"), 50)]


def test_lit_cancel_last_order_removes_level() -> None:
    # given
    book = LitBook([resting(1, BUY, "99.00", 10), resting(2, BUY, "98.00", 10)])

    # when
    book.cancel(1)

    # then
    assert book.best_bid() == D("98.00")
    assert book.depth(BUY, 5) == [(D("98.00"), 10)]


def test_lit_depth_and_best_prices() -> None:
    # given
    book = LitBook(
        [
            resting(1, BUY, "99.99", 100),
            resting(2, BUY, "99.98", 200),
            resting(3, BUY, "99.99", 50),
            resting(4, BUY, "99.97", 10),
            resting(5, SELL, "100.01", 70),
            resting(6, SELL, "100.03", 30),
        ]
    )

    # when
    bids = book.depth(BUY, 2)
    asks = book.depth(SELL, 10)

    # then
    assert bids == [(D("99.99"), 150), (D("99.98"), 200)]
    assert asks == [(D("100.01"), 70), (D("100.03"), 30)]
    assert book.best_bid() == D("99.99")
    assert book.best_ask() == D("100.01")
    assert book.depth(BUY, 0) == []
    assert not book.is_crossed()
    assert len(book) == 6


def test_lit_empty_book_has_no_best_prices() -> None:
    # given
    book = LitBook()

    # when / then
    assert book.best_bid() is None
    assert book.best_ask() is None
    assert book.depth(SELL, 3) == []
    assert not book.is_crossed()


def test_lit_is_crossed_detects_locked_book() -> None:
    # given: add() rests without matching, so a caller can build a locked book
    book = LitBook([resting(1, BUY, "100.00", 10)])

    # when
    book.add(resting(2, SELL, "100.00", 10))

    # then
    assert book.is_crossed()


def test_lit_fillable_quantity() -> None:
    # given
    book = LitBook(
        [
            resting(1, SELL, "100.00", 10),
            resting(2, SELL, "100.01", 20),
            resting(3, SELL, "100.02", 40),
            resting(4, BUY, "99.00", 5),
        ]
    )

    # when / then
    assert book.fillable_quantity(BUY, D("99.99")) == 0
    assert book.fillable_quantity(BUY, D("100.00")) == 10
    assert book.fillable_quantity(BUY, D("100.01")) == 30
    assert book.fillable_quantity(BUY, None) == 70
    assert book.fillable_quantity(SELL, D("99.00")) == 5
    assert book.fillable_quantity(SELL, D("99.01")) == 0


def test_lit_resting_orders_bids_then_asks_best_first_in_time_order() -> None:
    # given
    book = LitBook(
        [
            resting(1, SELL, "100.02", 1),
            resting(2, BUY, "99.98", 1),
            resting(3, SELL, "100.01", 1),
            resting(4, BUY, "99.99", 1),
            resting(5, BUY, "99.99", 1),
        ]
    )

    # when
    ids = [o.order_id for o in book.resting()]

    # then
    assert ids == [4, 5, 2, 3, 1]


# --- DarkBook ------------------------------------------------------------------------


def test_dark_trades_at_midpoint() -> None:
    # given
    book = DarkBook([resting(1, SELL, "99.00", 100)])

    # when
    result = book.submit(limit(10, BUY, "101.00", 60), midpoint=D("100.005"), sequence=10)

    # then
    assert result == MatchResult(
        fills=[Fill(1, 10, D("100.005"), 60)],
        filled_quantity=60,
        rested_quantity=0,
        cancelled_quantity=0,
        maker_remaining={1: 40},
    )


def test_dark_no_trade_when_mid_above_buyer_limit() -> None:
    # given
    book = DarkBook([resting(1, SELL, "99.00", 100)])

    # when
    result = book.submit(limit(10, BUY, "100.00", 60), midpoint=D("100.01"), sequence=10)

    # then: Day limit rests hidden instead
    assert result.fills == []
    assert result.rested_quantity == 60
    assert len(book) == 2


def test_dark_no_trade_when_mid_outside_maker_limit() -> None:
    # given: the resting seller wants at least 100.02
    book = DarkBook([resting(1, SELL, "100.02", 100)])

    # when
    result = book.submit(limit(10, BUY, "101.00", 60, IOC), midpoint=D("100.01"), sequence=10)

    # then
    assert result == MatchResult([], 0, 0, 60, {})
    assert snapshot(book) == [(1, SELL, D("100.02"), 100, 1)]


def test_dark_mid_equal_to_both_limits_trades() -> None:
    # given
    book = DarkBook([resting(1, BUY, "100.0050", 10)])

    # when
    result = book.submit(limit(10, SELL, "100.005", 10), midpoint=D("100.0050"), sequence=10)

    # then
    assert result.fills == [Fill(1, 10, D("100.0050"), 10)]


def test_dark_no_trade_without_midpoint() -> None:
    # given
    book = DarkBook([resting(1, SELL, "99.00", 100)])

    # when
    ioc = book.submit(market(10, BUY, 50, IOC), midpoint=None, sequence=10)
    day = book.submit(limit(11, BUY, "101.00", 50, DAY), midpoint=None, sequence=11)

    # then
    assert ioc == MatchResult([], 0, 0, 50, {})
    assert day == MatchResult([], 0, 50, 0, {})
    assert book.fillable_quantity(BUY, None, midpoint=None) == 0


def test_dark_time_priority_ignores_price() -> None:
    # given: the later maker has the more aggressive price
    book = DarkBook(
        [
            resting(1, SELL, "99.90", 50, sequence=2),
            resting(2, SELL, "95.00", 50, sequence=3),
            resting(3, SELL, "99.95", 50, sequence=1),
            resting(4, SELL, "100.20", 50, sequence=0),  # above mid: not eligible
        ]
    )

    # when
    result = book.submit(market(10, BUY, 120, IOC), midpoint=D("100.00"), sequence=10)

    # then
    assert result.fills == [
        Fill(3, 10, D("100.00"), 50),
        Fill(1, 10, D("100.00"), 50),
        Fill(2, 10, D("100.00"), 20),
    ]
    assert result.maker_remaining == {3: 0, 1: 0, 2: 30}
    assert snapshot(book) == [
        (4, SELL, D("100.20"), 50, 0),
        (2, SELL, D("95.00"), 30, 3),
    ]


def test_dark_time_priority_across_and_within_price_levels() -> None:
    # given: order ids deliberately disagree with time priority
    book = DarkBook(
        [
            resting(10, BUY, "100.50", 10, sequence=1),
            resting(1, BUY, "100.50", 10, sequence=4),
            resting(5, BUY, "101.00", 10, sequence=2),
            resting(7, BUY, "100.00", 10, sequence=3),
        ]
    )

    # when
    result = book.submit(market(20, SELL, 40), midpoint=D("100.25"), sequence=20)

    # then: order 7 (100.00) does not accept a 100.25 mid
    assert [(f.maker_order_id, f.quantity) for f in result.fills] == [
        (10, 10),
        (5, 10),
        (1, 10),
    ]
    assert result.cancelled_quantity == 10
    assert snapshot(book) == [(7, BUY, D("100.00"), 10, 3)]


def test_dark_half_cent_midpoint_prints_with_four_decimals() -> None:
    # given
    mid = midpoint(D("100.00"), D("100.01"))
    book = DarkBook([resting(1, BUY, "100.01", 10)])

    # when
    assert mid is not None
    result = book.submit(market(10, SELL, 10, IOC), midpoint=mid, sequence=10)

    # then
    assert result.fills[0].price == D("100.005")
    assert str(result.fills[0].price) == "100.0050"


def test_dark_fok_all_or_nothing() -> None:
    # given
    book = DarkBook([resting(1, SELL, "99.00", 30), resting(2, SELL, "100.50", 30)])
    before = snapshot(book)

    # when: only order 1 accepts a mid of 100.00
    short = book.submit(limit(10, BUY, "101", 40, FOK), midpoint=D("100"), sequence=10)
    after_short = snapshot(book)
    full = book.submit(limit(11, BUY, "101", 30, FOK), midpoint=D("100"), sequence=11)

    # then
    assert short == MatchResult([], 0, 0, 40, {})
    assert after_short == before
    assert full.fills == [Fill(1, 11, D("100"), 30)]
    assert (full.filled_quantity, full.cancelled_quantity) == (30, 0)


def test_dark_gtc_remainder_rests_hidden_and_can_trade_later() -> None:
    # given
    book = DarkBook()
    book.submit(limit(1, BUY, "100.10", 40, GTC), midpoint=D("100.00"), sequence=1)

    # when
    result = book.submit(market(2, SELL, 50, IOC), midpoint=D("100.05"), sequence=2)

    # then
    assert result.fills == [Fill(1, 2, D("100.05"), 40)]
    assert result.cancelled_quantity == 10
    assert len(book) == 0


def test_dark_market_gtc_raises() -> None:
    # given
    book = DarkBook()

    # when / then
    with pytest.raises(ValueError, match="GTC"):
        book.submit(market(10, BUY, 5, GTC), midpoint=D("100"), sequence=10)


def test_dark_fillable_quantity() -> None:
    # given
    book = DarkBook(
        [
            resting(1, BUY, "100.00", 10),
            resting(2, BUY, "100.05", 20),
            resting(3, BUY, "99.00", 40),
        ]
    )

    # when / then
    assert book.fillable_quantity(SELL, None, midpoint=D("100.00")) == 30
    assert book.fillable_quantity(SELL, D("100.00"), midpoint=D("100.00")) == 30
    assert book.fillable_quantity(SELL, D("100.01"), midpoint=D("100.00")) == 0
    assert book.fillable_quantity(SELL, None, midpoint=D("98.00")) == 70
    assert book.fillable_quantity(BUY, None, midpoint=D("98.00")) == 0


def test_dark_cancel() -> None:
    # given
    book = DarkBook([resting(1, BUY, "100.00", 10), resting(2, BUY, "100.00", 20)])

    # when
    removed = book.cancel(1)

    # then
    assert removed == 10
    assert book.cancel(99) == 0
    assert snapshot(book) == [(2, BUY, D("100.00"), 20, 2)]


# --- midpoint() ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask", "expected"),
    [
        ("100.00", "100.02", "100.0100"),
        ("100.00", "100.01", "100.0050"),
        ("10.0001", "10.0002", "10.0002"),  # 10.00015 rounds half up
        ("10.00011", "10.00012", "10.0001"),  # 10.000115 rounds down
        ("0.0001", "0.0002", "0.0002"),
        ("10.0002", "10.0003", "10.0003"),  # half up, not banker's rounding
    ],
)
def test_midpoint_quantizes_half_up_to_four_decimals(bid: str, ask: str, expected: str) -> None:
    # when
    mid = midpoint(D(bid), D(ask))

    # then
    assert mid is not None
    assert str(mid) == expected


@pytest.mark.parametrize(
    ("bid", "ask"),
    [
        ("100.01", "100.00"),  # crossed
        ("100.00", "100.00"),  # locked
        (None, "100.00"),
        ("100.00", None),
        (None, None),
    ],
)
def test_midpoint_is_none_without_a_two_sided_uncrossed_market(bid: str | None, ask: str | None) -> None:
    # when
    mid = midpoint(
        None if bid is None else D(bid),
        None if ask is None else D(ask),
    )

    # then
    assert mid is None
