"""Halts and odd amounts must never wedge the order flow (issue 10, item 3).

- Day expiry at the close finishes every due Day order, held New ones included, and one failure never
  stops the others.
- Depth, NBBO, fill-or-kill availability and dark midpoints ignore halted venues.
- The halt rule for immediate orders (IOC, FOK, Market): when a halt keeps them from trading now they
  end Cancelled with the halt as reason, never trade hours later; a Day/GTC Limit order waits instead.
- A trade whose notional rounds to 0.00 settles into correct books and readable holdings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max, Min

from orders import kill_switch, outbox, services
from orders.models import ChildOrder, ChildStatus, HaltScope, Order, OrderEvent, OrderStatus, Trade
from orders.selectors import customer_holdings
from orders.streaming import customer_group
from pools import engine
from pools import services as pool_services
from pools.models import Book, BookOrderStatus, Pool, PoolKind
from settlement import services as settlement_services
from settlement.models import CASH_ASSET, Reservation
from settlement.selectors import cash_balance
from tests.conftest import Market, drive, make_ticker, place
from tests.invariants import all_violations
from tests.streams import sequence_now

pytestmark = pytest.mark.django_db

ENTERED = datetime(2024, 3, 8, 20, 0, tzinfo=UTC)  # Friday 15:00 New York
AFTER_CLOSE = datetime(2024, 3, 8, 21, 1, tzinfo=UTC)  # just after the 16:00 New York close


def halt(scope: str, target_id: int | None, *, reason: str = "test halt") -> None:
    kill_switch.halt_set(scope=scope, target_id=target_id, active=True, reason=reason, actor="ops")


def release(scope: str, target_id: int | None) -> None:
    kill_switch.halt_set(scope=scope, target_id=target_id, active=False, reason="", actor="ops")


def lit_pools(market: Market) -> list[Pool]:
    return [pool for pool in market["pools"].values() if pool.kind == PoolKind.LIT]


def assert_released(order: Order) -> None:
    """Nothing of the order's reservation is held any more: the customer can spend it all again."""
    reservation = Reservation.objects.get(order_ref=order.pk)
    assert reservation.open_units == 0
    assert reservation.pending == 0
    customer_id = order.customer_id
    assert settlement_services.available(customer_id=customer_id, asset=CASH_ASSET) == cash_balance(
        customer_id=customer_id
    )


def streamed_order_messages(customer_id: str, action: Callable[[], object]) -> list[dict[str, Any]]:
    """Run `action` (committing its on-commit effects) while subscribed to the customer's fill stream.

    Returns the `order` messages received. The action runs in this (the test's) thread, so it sees the
    test's database transaction.
    """
    layer = get_channel_layer()
    assert layer is not None

    async def run() -> list[dict[str, Any]]:
        channel = await layer.new_channel()
        await layer.group_add(customer_group(customer_id), channel)
        try:
            # What the test did before is numbered and never published: only the action's events stream.
            await sync_to_async(outbox.events_sequence, thread_sensitive=True)()
            await sync_to_async(action, thread_sensitive=True)()
            # The stream's sequencer, in the test's thread: it sees the test's transaction.
            await sync_to_async(sequence_now, thread_sensitive=True)()
            messages = []
            while True:
                try:
                    # A guard against hanging the suite, not a timing assertion.
                    message = await asyncio.wait_for(layer.receive(channel), timeout=5)
                except TimeoutError:
                    break
                payloads = [json.loads(text) for _, text in message["events"]]
                orders = [payload["order"] for payload in payloads if payload["type"] == "order"]
                if orders:
                    messages.append(orders[0])
                    break
            return messages
        finally:
            await layer.group_discard(customer_group(customer_id), channel)

    return async_to_sync(run)()


# --- 1. Day expiry at the close -----------------------------------------------------------------------


def test_a_day_order_held_new_by_a_halt_expires_at_the_close_with_the_others(market: Market, settings: Any) -> None:
    # given an older resting Day order, and a newer Day order held New by its customer's halt
    settings.MARKET_CALENDAR = "XNYS"
    resting = place("000002", quantity=200, price="200.00")
    drive(resting)
    held = place("000003", quantity=100, price="200.00")
    halt(HaltScope.CUSTOMER, market["customers"]["000003"].pk)
    services.order_route(order_id=held.pk)
    held.refresh_from_db()
    assert held.status == OrderStatus.NEW
    Order.objects.filter(pk__in=[resting.pk, held.pk]).update(created_at=ENTERED)

    # when the expiry job runs after the close
    expired = services.orders_expire_day(now=AFTER_CLOSE)

    # then both expired, the held one without ever reaching a venue, and both reservations are released
    resting.refresh_from_db()
    held.refresh_from_db()
    assert expired == 2
    assert (resting.status, held.status) == (OrderStatus.EXPIRED, OrderStatus.EXPIRED)
    assert not held.children.exists()
    assert OrderEvent.objects.filter(order=held, from_status=OrderStatus.NEW, to_status=OrderStatus.EXPIRED).exists()
    assert_released(held)
    assert_released(resting)
    assert ChildOrder.objects.get(parent=resting).status == ChildStatus.EXPIRED
    # and the next run finds nothing left
    assert services.orders_expire_day(now=AFTER_CLOSE + timedelta(minutes=1)) == 0


def test_one_order_that_cannot_be_expired_does_not_stop_the_others(
    market: Market, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given three resting Day orders entered before the close, the middle one failing to expire
    # (an injected fault: any unexpected error, e.g. a lock timeout, on one order)
    settings.MARKET_CALENDAR = "XNYS"
    orders = [place(quantity=100, price=price) for price in ("200.00", "201.00", "202.00")]
    for order in orders:
        drive(order)
    Order.objects.filter(pk__in=[order.pk for order in orders]).update(created_at=ENTERED)
    failing = orders[1]
    real_expire = services.order_expire

    def expire_or_fail(*, order_id: int) -> Order:
        if order_id == failing.pk:
            raise RuntimeError("injected failure")
        return real_expire(order_id=order_id)

    from orders.services import closing

    monkeypatch.setattr(closing, "order_expire", expire_or_fail)

    # when the expiry job runs after the close
    expired = services.orders_expire_day(now=AFTER_CLOSE)

    # then the others expired, the failure was logged with its order, and it is still open for the next run
    statuses = {order.pk: Order.objects.get(pk=order.pk).status for order in orders}
    assert expired == 2
    assert statuses == {
        orders[0].pk: OrderStatus.EXPIRED,
        failing.pk: OrderStatus.ROUTED,
        orders[2].pk: OrderStatus.EXPIRED,
    }
    assert str(failing.order_id) in caplog.text


# --- 2. Halted venues are invisible to depth, NBBO, FOK and dark midpoints ------------------------------


def test_fill_or_kill_with_a_halted_lit_pool_fills_from_the_open_venues(market: Market) -> None:
    # given EDGA halted
    edga = market["pools"]["EDGA"]
    halt(HaltScope.POOL, edga.pk)

    # when a FOK buy that needs several venues is routed
    order = place(quantity=3000, price="260.00", timeInForce="FOK")
    drive(order)

    # then it filled completely without touching EDGA
    assert order.status == OrderStatus.FILLED
    assert not Trade.objects.filter(order=order, pool=edga).exists()
    assert not ChildOrder.objects.filter(parent=order, pool=edga).exists()
    assert all_violations() == []


def test_fill_or_kill_counts_only_liquidity_on_open_venues(market: Market) -> None:
    # given every lit pool but one halted
    lit = sorted(lit_pools(market), key=lambda pool: pool.name)
    open_pool = lit[0]
    for pool in lit[1:]:
        halt(HaltScope.POOL, pool.pk)
    on_open_pool = sum(
        order.remaining
        for order in Book.objects.get(pool=open_pool, ticker=market["ticker"])
        .orders.filter(status=BookOrderStatus.OPEN, side=engine.Side.SELL, price__lte=Decimal("260.00"))
        .only("remaining")
    )

    # when a FOK buy larger than what the open venue shows (but not than all of them) is routed
    order = place(quantity=on_open_pool + 100, price="260.00", timeInForce="FOK")
    drive(order)

    # then it is killed for lack of liquidity on the open venue, and nothing traded anywhere
    assert order.status == OrderStatus.CANCELLED
    assert order.reject_reason == f"FOK: only {on_open_pool} of {on_open_pool + 100} available within the limit"
    assert not Trade.objects.filter(order=order).exists()
    assert_released(order)


def test_dark_midpoint_ignores_a_halted_lit_pool(market: Market) -> None:
    # given a customer's sell resting inside the spread (best ask of the market), on the venue it chose
    inside = place("000003", direction="Sell", quantity=100, price="256.60", timeInForce="GTC")
    drive(inside)
    resting_pool = ChildOrder.objects.get(parent=inside).pool
    assert resting_pool is not None
    # and that venue halted
    halt(HaltScope.POOL, resting_pool.pk)
    tops = (
        Book.objects.filter(ticker=market["ticker"], pool__kind=PoolKind.LIT)
        .exclude(pool=resting_pool)
        .aggregate(bid=Max("best_bid"), ask=Min("best_ask"))
    )
    open_midpoint = engine.midpoint(tops["bid"], tops["ask"])
    assert open_midpoint is not None

    # when a large buy pings the dark pools first
    order = place("000002", quantity=2000, price="260.00")
    drive(order)

    # then its dark fills printed at the midpoint of the venues still trading, not of the halted one
    dark_prices = set(
        Trade.objects.filter(order=order, pool__kind=PoolKind.DARK).values_list("price", flat=True).distinct()
    )
    assert dark_prices == {open_midpoint}


# --- 3. The halt rule for immediate orders -----------------------------------------------------------------


IMMEDIATE = [
    pytest.param({"type": "Limit", "price": "260.00", "timeInForce": "IOC"}, id="IOC"),
    pytest.param({"type": "Limit", "price": "260.00", "timeInForce": "FOK"}, id="FOK"),
    pytest.param({"type": "Market", "timeInForce": "Day"}, id="Market"),
]


@pytest.mark.parametrize("fields", IMMEDIATE)
def test_an_immediate_order_is_cancelled_when_every_lit_pool_is_halted(market: Market, fields: dict[str, str]) -> None:
    # given an immediate order accepted, then every lit pool halted before it was routed
    order = place(quantity=300, **fields)
    assert order.status == OrderStatus.NEW
    for pool in lit_pools(market):
        halt(HaltScope.POOL, pool.pk, reason="venue outage")

    # when it is routed (the streamed update is captured)
    messages = streamed_order_messages("000002", lambda: _route_committing(order))

    # then it ended Cancelled with the halt as reason, nothing traded, its reservation released
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.reject_reason.startswith("every lit venue is halted (trading halted on pool ")
    assert order.reject_reason.endswith(": venue outage)")
    assert not Trade.objects.filter(order=order).exists()
    assert OrderEvent.objects.filter(order=order, from_status=OrderStatus.NEW, to_status=OrderStatus.CANCELLED).exists()
    assert_released(order)
    assert [(message["orderId"], message["status"]) for message in messages] == [
        (str(order.order_id), OrderStatus.CANCELLED)
    ]
    # and it stays so once the halt is lifted and the sweeper runs
    for pool in lit_pools(market):
        release(HaltScope.POOL, pool.pk)
    services.order_route(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def _route_committing(order: Order) -> None:
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        services.order_route(order_id=order.pk)


@pytest.mark.parametrize("scope", [HaltScope.TICKER, HaltScope.CUSTOMER, HaltScope.ALL])
def test_an_immediate_order_accepted_before_a_halt_is_cancelled_at_route_time(market: Market, scope: str) -> None:
    # given an IOC order accepted, then a halt covering it
    order = place(quantity=300, price="260.00", timeInForce="IOC")
    targets: dict[str, int | None] = {
        HaltScope.TICKER: market["ticker"].pk,
        HaltScope.CUSTOMER: market["customers"]["000002"].pk,
        HaltScope.ALL: None,
    }
    halt(scope, targets[scope])

    # when the router (or the sweeper, later) gets to it
    services.order_route(order_id=order.pk)

    # then it is Cancelled with the halt as reason, not left New to trade once the halt is lifted
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.reject_reason == kill_switch.halt_reason(customer_id=order.customer_id, ticker_id=order.ticker_id)
    assert not order.children.exists()
    assert_released(order)


def test_an_immediate_childs_match_held_by_a_halt_cancels_it(market: Market) -> None:
    # given an IOC order routed into several children that have not reached their venues
    order = place(quantity=2500, price="260.00", timeInForce="IOC")
    services.order_route(order_id=order.pk)
    children = list(ChildOrder.objects.filter(parent=order).order_by("pk"))
    assert len(children) > 1

    # when the ticker is halted and the match tasks run
    halt(HaltScope.TICKER, market["ticker"].pk, reason="news pending")
    for child in children:
        services.child_match(child_id=child.pk, attempt=child.attempt)

    # then every child and the order ended Cancelled with the halt as reason; nothing traded or was sent
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert "news pending" in order.reject_reason
    assert set(ChildOrder.objects.filter(parent=order).values_list("status", flat=True)) == {ChildStatus.CANCELLED}
    assert ChildOrder.objects.filter(parent=order, submitted_attempt=0).count() == len(children)
    assert not Trade.objects.filter(order=order).exists()
    assert_released(order)
    # and the sweeper has nothing to re-drive once the halt is lifted
    release(HaltScope.TICKER, market["ticker"].pk)
    swept = services.orders_sweep(older_than=timedelta(seconds=-1))
    assert (swept["orders"], swept["children"]) == (0, 0)
    assert all_violations() == []


def test_a_market_childs_match_held_by_its_pool_halt_ends_it_with_what_filled(market: Market) -> None:
    # given a Market order routed into children
    order = place(quantity=2500, type="Market")
    services.order_route(order_id=order.pk)
    children = list(ChildOrder.objects.filter(parent=order).select_related("pool").order_by("pk"))
    first, rest = children[0], children[1:]
    assert first.pool is not None

    # when the first child's venue is halted, then every match task runs (re-routes included)
    halt(HaltScope.POOL, first.pool.pk, reason="venue outage")
    drive(order)

    # then that child was cancelled at its venue's halt, the others traded, and the order is finished
    first.refresh_from_db()
    order.refresh_from_db()
    assert first.status == ChildStatus.CANCELLED
    assert not Trade.objects.filter(child=first).exists()
    assert Trade.objects.filter(child__in=rest).exists()
    assert order.is_final
    assert order.filled_quantity == order.quantity - first.quantity
    assert order.status == OrderStatus.CANCELLED
    assert "venue outage" in order.reject_reason
    assert Reservation.objects.get(order_ref=order.pk).open_units == 0
    assert all_violations() == []


def test_a_day_limit_order_waits_while_every_lit_pool_is_halted_then_routes(market: Market) -> None:
    # given a Day limit order accepted, then every lit pool halted
    order = place(quantity=300, price="260.00")
    for pool in lit_pools(market):
        halt(HaltScope.POOL, pool.pk)

    # when the router and then the sweeper try it (no exception, it just waits)
    services.order_route(order_id=order.pk)
    assert services.orders_sweep(older_than=timedelta(seconds=-1))["orders"] == 1
    services.order_route(order_id=order.pk)

    # then it is still New with nothing routed
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW
    assert not order.children.exists()

    # when the halts are lifted and the sweeper re-drives it
    for pool in lit_pools(market):
        release(HaltScope.POOL, pool.pk)
    drive(order)

    # then it is routed and fills
    assert order.status == OrderStatus.FILLED


# --- 4. A trade whose notional rounds to zero -------------------------------------------------------------


def test_a_sub_penny_trade_settles_into_correct_books_and_readable_holdings(market: Market) -> None:
    # given a ticker quoted at a hundredth of a cent
    ticker = make_ticker("PENNY", "0.0001")
    pool_services.books_ensure(ticker_id=ticker.pk)
    customer = market["customers"]["000002"]
    cash_before = cash_balance(customer_id=customer.pk)

    # when the customer buys one share at 0.0002 and sells it at 0.0001, and both trades settle
    buy = place(ticker="PENNY", quantity=1, price="0.0002", timeInForce="IOC")
    drive(buy)
    services.trades_settle(trade_ids=list(Trade.objects.filter(order=buy).values_list("pk", flat=True)))
    after_buy = {row.ticker: row.quantity for row in customer_holdings(customer=customer)}
    sell = place(ticker="PENNY", direction="Sell", quantity=1, price="0.0001", timeInForce="IOC")
    drive(sell)
    services.trades_settle(trade_ids=list(Trade.objects.filter(order=sell).values_list("pk", flat=True)))

    # then both filled with notionals and fees of 0.00, and the books still add up
    assert (buy.status, sell.status) == (OrderStatus.FILLED, OrderStatus.FILLED)
    assert {trade.fee for trade in Trade.objects.filter(ticker=ticker)} == {Decimal("0.00")}
    assert after_buy["PENNY"] == 1
    after_sell = {row.ticker: row.quantity for row in customer_holdings(customer=customer)}
    assert "PENNY" not in after_sell or after_sell["PENNY"] == 0
    assert cash_balance(customer_id=customer.pk) == cash_before
    assert all_violations() == []


def test_fill_or_kill_locks_every_resting_parent_before_its_first_fill(market: Market) -> None:
    # given broker orders of two customers resting on the lit books
    import re

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from orders import services

    makers = [
        place("000003", direction="Sell", quantity=200, price="256.65"),
        place("000004", direction="Sell", quantity=200, price="256.66"),
    ]
    for maker in makers:
        drive(maker)
        assert maker.status == OrderStatus.ROUTED  # resting

    # when a FOK buy is routed (it fills child by child, each fill locking the parents it touches)
    order = place(quantity=3000, price="260.00", timeInForce="FOK")
    with CaptureQueriesContext(connection) as queries:
        services.order_route(order_id=order.pk)

    # then its first order lock already held its own order and every resting parent, in one statement:
    # later fills only re-lock what it holds, so parents are never taken out of id order (a dark match
    # locking the same parents by id could otherwise deadlock with it)
    # (the fill-or-kill transaction starts with its book locks; before it, routing only read the order)
    statements = [query["sql"] for query in queries.captured_queries]
    first_book_lock = next(
        index for index, sql in enumerate(statements) if sql.startswith('SELECT "pools_book"') and "FOR NO KEY" in sql
    )
    order_locks = [
        sql
        for sql in statements[first_book_lock:]
        if sql.startswith('SELECT "orders_order"') and "FOR NO KEY UPDATE" in sql
    ]
    assert order_locks, "the route locks orders"
    listed = re.search(r'"orders_order"\."id" IN \(([\d, ]+)\)', order_locks[0])
    assert listed is not None, order_locks[0][:300]
    assert {order.pk, *(maker.pk for maker in makers)} <= {int(pk) for pk in listed.group(1).split(",")}
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert all_violations() == []
