"""The order flow through the services: split, route, match in dark and lit pools, trades, cancel, replays."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum

from broker.exceptions import Conflict
from orders import services
from orders.models import ChildOrder, ChildStatus, Order, OrderEvent, OrderStatus, Trade
from pools.models import BookOrder, BookOrderOwner, BookOrderStatus, Execution, Pool, PoolKind
from tests.conftest import Market, drive, place

pytestmark = pytest.mark.django_db


def venue(child: ChildOrder) -> Pool:
    assert child.pool is not None, f"child {child.pk} was never routed"
    return child.pool


def trades_of(order: Order) -> list[Trade]:
    return list(Trade.objects.filter(order=order).select_related("pool", "execution"))


def test_seed_order_is_split_routed_dark_first_and_filled(market: Market) -> None:
    # given the seed example: 8614 COIN, a marketable limit
    order = place(quantity=8614, price="260.00")

    # when it is routed and every child is matched
    drive(order)

    # then nine children of at most 1000, the first two pinging the dark pools, all filled
    children = list(ChildOrder.objects.filter(parent=order).select_related("pool").order_by("index"))
    assert [child.quantity for child in children] == [1000] * 8 + [614]
    assert [venue(child).kind for child in children[:2]] == [PoolKind.DARK, PoolKind.DARK]
    assert all(venue(child).kind == PoolKind.LIT for child in children[2:])
    assert all(child.route_reason for child in children)
    assert order.status == OrderStatus.FILLED
    trades = trades_of(order)
    assert sum(trade.quantity for trade in trades) == order.filled_quantity == 8614
    assert all(trade.quantity <= 1000 and trade.price <= Decimal("260.00") for trade in trades)
    assert {trade.pool.exchange_type for trade in trades} == {"LitPool", "DarkPool"}
    assert order.fees == sum(trade.fee for trade in trades)
    assert order.average_price == (
        sum((trade.price * trade.quantity for trade in trades), Decimal(0)) / order.filled_quantity
    ).quantize(Decimal("0.0001"))


def test_every_trade_matches_its_venue_execution(market: Market) -> None:
    # given a filled order
    order = place(quantity=3500, price="260.00")
    drive(order)

    # then each trade carries exactly its execution's venue, price, quantity and taker fee
    for trade in trades_of(order):
        execution = trade.execution
        assert (execution.pool_id, execution.price, execution.quantity) == (trade.pool_id, trade.price, trade.quantity)
        assert trade.fee == execution.taker_fee
        assert execution.taker.client_ref == trade.child_id


def test_dark_prints_at_the_nbbo_midpoint(market: Market) -> None:
    # given a large order that pings the dark pools
    order = place(quantity=4000, price="260.00")

    # when it is matched
    drive(order)

    # then every dark trade printed at a midpoint inside the limit, and dark and lit were both used
    dark = [trade for trade in trades_of(order) if trade.pool.kind == PoolKind.DARK]
    assert dark
    for trade in dark:
        assert trade.price <= Decimal("260.00")
        assert trade.price == trade.price.quantize(Decimal("0.0001"))


def test_dark_miss_is_rerouted_to_a_lit_venue(market: Market) -> None:
    # given dark pools with no interest at all
    BookOrder.objects.filter(book__pool__kind=PoolKind.DARK).update(status=BookOrderStatus.CANCELLED, remaining=0)
    order = place(quantity=3000, price="260.00")

    # when routed and matched
    drive(order)

    # then the dark children came back and were filled on lit venues
    assert order.status == OrderStatus.FILLED
    dark_first = ChildOrder.objects.filter(parent=order, index__in=[1, 2]).select_related("pool")
    for child in dark_first:
        assert len(child.venues_tried) == 2
        assert venue(child).kind == PoolKind.LIT
        assert child.status == ChildStatus.FILLED
    assert OrderEvent.objects.filter(order=order, kind="rerouted").count() == 2
    assert not Trade.objects.filter(order=order, pool__kind=PoolKind.DARK).exists()


def test_small_order_goes_to_the_best_lit_price(market: Market) -> None:
    # given the best displayed ask across lit venues
    best_ask = (
        BookOrder.objects.filter(book__pool__kind=PoolKind.LIT, side="Sell", status=BookOrderStatus.OPEN)
        .order_by("price")
        .values_list("price", "book__pool__name")
        .first()
    )
    assert best_ask is not None

    # when a small marketable buy is routed
    order = place(quantity=100, price="260.00")
    drive(order)

    # then its single child went to that venue and printed at that price
    child = ChildOrder.objects.select_related("pool").get(parent=order)
    assert venue(child).name == best_ask[1]
    assert [trade.price for trade in trades_of(order)] == [best_ask[0]]


def test_customers_match_each_other_inside_the_spread(market: Market) -> None:
    # given a sell resting inside the provider spread (nothing displayed to take)
    seller = place("000003", direction="Sell", quantity=300, price="256.62")
    drive(seller)
    assert seller.status == OrderStatus.ROUTED
    resting = BookOrder.objects.get(client_ref=ChildOrder.objects.get(parent=seller).pk, status="Open")

    # when another customer buys at that price
    buyer = place("000002", direction="Buy", quantity=300, price="256.62")
    drive(buyer)

    # then one execution, two trades (one each), both orders filled at the resting price
    seller.refresh_from_db()
    assert (buyer.status, seller.status) == (OrderStatus.FILLED, OrderStatus.FILLED)
    execution = Execution.objects.get(maker=resting)
    sides = {trade.customer.customer_id: trade for trade in execution.trades.select_related("customer")}
    assert set(sides) == {"000002", "000003"}
    assert sides["000003"].liquidity == "Maker"
    assert sides["000002"].liquidity == "Taker"
    assert sides["000003"].price == sides["000002"].price == Decimal("256.62")
    assert sides["000003"].fee == execution.maker_fee


def test_ioc_with_nothing_to_take_is_cancelled_without_fills(market: Market) -> None:
    # given an IOC buy below every displayed ask
    order = place(quantity=500, price="250.00", timeInForce="IOC")

    # when routed
    drive(order)

    # then nothing rested and the order ended Cancelled with no fills
    assert order.status == OrderStatus.CANCELLED
    assert order.filled_quantity == 0
    assert not BookOrder.objects.filter(client_ref__in=order.children.values("pk"), status="Open").exists()


def test_day_limit_below_the_market_rests_visibly(market: Market) -> None:
    # when a Day buy far below the market is routed
    order = place(quantity=500, price="200.00")
    drive(order)

    # then it rests on one venue and stays Routed
    assert order.status == OrderStatus.ROUTED
    child = ChildOrder.objects.get(parent=order)
    assert BookOrder.objects.get(client_ref=child.pk, status="Open").remaining == 500


def test_market_order_fills_and_never_rests(market: Market) -> None:
    # when a Market sell is routed
    order = place(direction="Sell", type="Market", quantity=1500)
    drive(order)

    # then it filled completely against the bids
    assert order.status == OrderStatus.FILLED
    assert not BookOrder.objects.filter(client_ref__in=order.children.values("pk"), status="Open").exists()


def test_fill_or_kill_that_cannot_fill_is_killed_without_trades(market: Market) -> None:
    # given an affordable order for more than all the displayed liquidity within the limit
    order = place("000004", quantity=30_000, price="257.00", timeInForce="FOK")

    # when routed
    drive(order)

    # then nothing traded at all
    assert order.status == OrderStatus.CANCELLED
    assert "FOK" in order.reject_reason
    assert not Trade.objects.filter(order=order).exists()
    assert not ChildOrder.objects.filter(parent=order).exists()


def test_fill_or_kill_fills_everything_across_venues(market: Market) -> None:
    # when a FOK buy that the lit venues can fill together is routed
    order = place(quantity=4500, price="260.00", timeInForce="FOK")
    drive(order)

    # then it filled completely, over more than one venue
    assert order.status == OrderStatus.FILLED
    assert Trade.objects.filter(order=order).aggregate(total=Sum("quantity"))["total"] == 4500
    assert Trade.objects.filter(order=order).values("pool").distinct().count() > 1


def test_route_and_match_replays_are_no_ops(market: Market) -> None:
    # given a filled order
    order = place(quantity=2500, price="260.00")
    drive(order)
    counts = (ChildOrder.objects.count(), Trade.objects.count(), Execution.objects.count(), OrderEvent.objects.count())

    # when every task is delivered again
    services.order_route(order_id=order.pk)
    for child in ChildOrder.objects.filter(parent=order):
        for attempt in range(1, child.attempt + 1):
            services.child_match(child_id=child.pk, attempt=attempt)

    # then nothing new happened
    after = (ChildOrder.objects.count(), Trade.objects.count(), Execution.objects.count(), OrderEvent.objects.count())
    assert after == counts


def test_cancel_takes_a_resting_order_off_the_book_and_replays_quietly(market: Market) -> None:
    # given a resting order
    order = place(quantity=500, price="200.00")
    drive(order)
    child = ChildOrder.objects.get(parent=order)

    # when it is cancelled twice
    first = services.order_cancel(order_id=order.pk, actor=None)
    second = services.order_cancel(order_id=order.pk, actor=None)

    # then it is off the book once, and the replay changed nothing
    assert first.status == second.status == OrderStatus.CANCELLED
    assert BookOrder.objects.get(client_ref=child.pk).status == BookOrderStatus.CANCELLED
    assert OrderEvent.objects.filter(order=order, to_status=OrderStatus.CANCELLED, child=None).count() == 1


def test_cancel_of_a_filled_order_is_refused(market: Market) -> None:
    order = place(quantity=100, price="260.00")
    drive(order)
    assert order.status == OrderStatus.FILLED

    with pytest.raises(Conflict):
        services.order_cancel(order_id=order.pk, actor=None)


def test_disallowed_transition_is_refused(market: Market) -> None:
    order = place(quantity=100, price="260.00")
    drive(order)

    with pytest.raises(services.TransitionRefused):
        services.transition(order, OrderStatus.ROUTED, actor="test", events=[])


def test_gateway_sequence_strictly_increases(market: Market) -> None:
    sequences = [place(quantity=100 + index, price="200.00").sequence for index in range(5)]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 5


def test_market_order_without_reference_price_is_rejected(market: Market) -> None:
    from tests.conftest import make_ticker

    ticker = make_ticker("ZZZZ")
    ticker.reference_price = None
    ticker.save()
    order = place(ticker="ZZZZ", type="Market")
    assert isinstance(order, Order)
    assert order.status == OrderStatus.REJECTED
    assert "reference price" in order.reject_reason


def test_liquidity_provider_replenishes_after_fills(market: Market) -> None:
    # when several large orders take liquidity
    for _ in range(4):
        drive(place(quantity=5000, price="260.00"))

    # then every lit book still shows provider asks
    lit_asks = BookOrder.objects.filter(
        book__pool__kind=PoolKind.LIT, owner=BookOrderOwner.LIQUIDITY, side="Sell", status=BookOrderStatus.OPEN
    )
    assert lit_asks.values("book").distinct().count() == 4


def test_day_orders_expire_after_the_xnys_close_in_calendar_mode(market: Market, settings: Any) -> None:
    # given resting Day and GTC orders entered on Friday 2024-03-08 at 15:00 New York time
    settings.MARKET_CALENDAR = "XNYS"
    day, gtc = place(quantity=200, price="200.00"), place(quantity=300, price="200.00", timeInForce="GTC")
    for order in (day, gtc):
        drive(order)
    entered = datetime(2024, 3, 8, 20, 0, tzinfo=UTC)
    Order.objects.filter(pk__in=[day.pk, gtc.pk]).update(created_at=entered)

    # when the expiry job runs before the close, then after it (16:00 EST = 21:00 UTC)
    before = services.orders_expire_day(now=datetime(2024, 3, 8, 20, 59, tzinfo=UTC))
    after = services.orders_expire_day(now=datetime(2024, 3, 8, 21, 1, tzinfo=UTC))

    # then only the Day order expired, and it left the book
    day.refresh_from_db()
    gtc.refresh_from_db()
    assert (before, after) == (0, 1)
    assert day.status == OrderStatus.EXPIRED
    assert gtc.status == OrderStatus.ROUTED
    child = ChildOrder.objects.get(parent=day)
    assert child.status == ChildStatus.EXPIRED
    assert BookOrder.objects.get(client_ref=child.pk).status == BookOrderStatus.CANCELLED
    # and running it again changes nothing
    assert services.orders_expire_day(now=datetime(2024, 3, 9, 12, 0, tzinfo=UTC)) == 0


def test_nothing_expires_when_the_market_is_open_around_the_clock(market: Market, settings: Any) -> None:
    settings.MARKET_CALENDAR = ""
    order = place(quantity=200, price="200.00")
    drive(order)
    Order.objects.filter(pk=order.pk).update(created_at=datetime(2024, 3, 8, 20, 0, tzinfo=UTC))

    assert services.orders_expire_day(now=datetime(2024, 3, 11, 12, 0, tzinfo=UTC)) == 0
    order.refresh_from_db()
    assert order.status == OrderStatus.ROUTED


@pytest.mark.django_db(transaction=True)  # committed, as in a worker: the per-process venue cache works
def test_hot_path_query_budgets(market: Market, django_assert_max_num_queries: Any) -> None:
    # given an order the router sends to one lit venue, where it fills against providers
    order = place(quantity=300, price="260.00")

    # then routing and matching stay within their query budgets (a regression guard, not a timing test;
    # tests/orders/test_query_budget.py pins the amortized budget of a batch)
    # the order's lock, the depth, children, events, the stream's events (orders/outbox.py), begin/commit
    with django_assert_max_num_queries(9):
        services.order_route(order_id=order.pk, match_now=False)
    child = ChildOrder.objects.get(parent=order)
    with django_assert_max_num_queries(24):  # one batch of one child: book, fills, parents, reservations
        services.child_match(child_id=child.pk, attempt=1)
    child.refresh_from_db()
    assert child.status == ChildStatus.FILLED


def test_a_filled_orders_audit_trail_names_its_children_and_trades_in_order(market: Market) -> None:
    # given an order split across venues and filled (routing, matching: audit rows written with the
    # stream's events in one statement)
    order = place(direction="Buy", type="Limit", quantity=500, price="260.00", timeInForce="IOC")
    drive(order)
    assert order.status == OrderStatus.FILLED

    trail = list(OrderEvent.objects.filter(order=order).order_by("pk"))

    # then it begins with the acceptance and ends with the order filled, in the order things happened
    assert (trail[0].kind, trail[0].to_status) == ("accepted", OrderStatus.NEW)
    assert (trail[-1].from_status, trail[-1].to_status) in {
        (OrderStatus.ROUTED, OrderStatus.FILLED),
        (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED),
    }
    assert [event.created_at for event in trail] == sorted(event.created_at for event in trail)
    # and every child's routing, fills and status changes carry that child; each fill names its trade
    children = set(ChildOrder.objects.filter(parent=order).values_list("pk", flat=True))
    routed = [event for event in trail if event.kind == "routed"]
    assert {event.child_id for event in routed} == children
    fills = [event for event in trail if event.kind == "fill"]
    trades = Trade.objects.filter(order=order)
    assert sorted(event.detail["tradeId"] for event in fills) == sorted(str(trade.trade_id) for trade in trades)
    assert {event.child_id for event in fills} == set(trades.values_list("child_id", flat=True))
