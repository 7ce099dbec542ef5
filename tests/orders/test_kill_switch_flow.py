"""The kill switch inside the order flow: in-scope orders are rejected, out-of-scope ones go through,
and halted children stop being routed until trading resumes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orders import kill_switch, services
from orders.models import ChildOrder, HaltScope, Order, OrderStatus, Trade
from pools import services as pool_services
from tests.conftest import Market, drive, make_ticker, place

pytestmark = pytest.mark.django_db


def halt(scope: str, target_id: int | None) -> None:
    kill_switch.halt_set(scope=scope, target_id=target_id, active=True, reason="test halt", actor="ops")


@pytest.fixture
def second_ticker(market: Market) -> None:
    ticker = make_ticker("AAPL", "170.73")
    pool_services.books_ensure(ticker_id=ticker.pk)


def test_halt_everything_rejects_every_order(market: Market) -> None:
    halt(HaltScope.ALL, None)

    order = place(quantity=100, price="260.00")

    assert order.status == OrderStatus.REJECTED
    assert "all trading halted" in order.reject_reason
    assert "test halt" in order.reject_reason


def test_halt_a_ticker_rejects_it_and_not_others(market: Market, second_ticker: None) -> None:
    halt(HaltScope.TICKER, market["ticker"].pk)

    in_scope = place(quantity=100, price="260.00")
    out_of_scope = place(ticker="AAPL", quantity=100, price="180.00")

    assert in_scope.status == OrderStatus.REJECTED
    assert "ticker COIN" in in_scope.reject_reason
    drive(out_of_scope)
    assert out_of_scope.status == OrderStatus.FILLED


def test_halt_a_customer_rejects_only_that_customer(market: Market) -> None:
    halt(HaltScope.CUSTOMER, market["customers"]["000002"].pk)

    in_scope = place("000002", quantity=100, price="260.00")
    out_of_scope = place("000003", quantity=100, price="260.00")

    assert in_scope.status == OrderStatus.REJECTED
    assert "customer 000002" in in_scope.reject_reason
    drive(out_of_scope)
    assert out_of_scope.status == OrderStatus.FILLED


def test_halt_a_pool_keeps_orders_away_from_it(market: Market) -> None:
    # given EDGA halted
    edga = market["pools"]["EDGA"]
    halt(HaltScope.POOL, edga.pk)

    # when a large order is routed
    order = place(quantity=6000, price="260.00")
    drive(order)

    # then it was accepted and filled elsewhere: no child went to EDGA and nothing traded there
    assert order.status == OrderStatus.FILLED
    assert not ChildOrder.objects.filter(parent=order, pool=edga).exists()
    assert not any("EDGA" in child.venues_tried for child in ChildOrder.objects.filter(parent=order))
    assert not Trade.objects.filter(order=order, pool=edga).exists()


def test_halting_stops_routing_of_waiting_children_until_released(market: Market) -> None:
    # given a routed order whose children have not reached their venues yet
    order = place(quantity=2500, price="260.00")
    services.order_route(order_id=order.pk)
    children = list(ChildOrder.objects.filter(parent=order))
    assert children

    # when the ticker is halted and the match tasks run
    halt(HaltScope.TICKER, market["ticker"].pk)
    for child in children:
        services.child_match(child_id=child.pk, attempt=child.attempt)

    # then nothing was sent or traded, and the children are still waiting
    assert not Trade.objects.filter(order=order).exists()
    assert ChildOrder.objects.filter(parent=order, submitted_attempt=0).count() == len(children)

    # when trading resumes and the sweeper re-drives them
    kill_switch.halt_set(scope=HaltScope.TICKER, target_id=market["ticker"].pk, active=False, reason="", actor="ops")
    stuck = services.orders_sweep(older_than=timedelta(seconds=-1))
    drive(order)

    # then the sweeper found them, and the order filled
    assert stuck["children"] == len(children)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FILLED


def test_an_order_accepted_before_a_halt_waits_unrouted(market: Market) -> None:
    order = place(quantity=100, price="260.00")
    halt(HaltScope.ALL, None)

    services.order_route(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == OrderStatus.NEW
    assert not order.children.exists()
