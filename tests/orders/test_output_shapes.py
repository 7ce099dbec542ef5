"""`order_output` and `trade_output` write exactly what the DRF output serializers write, field by field."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.renderers import JSONRenderer

from broker.models import Customer, Ticker
from orders import services
from orders.api.serializers import OrderOutputSerializer, TradeOutputSerializer, order_output, trade_output
from orders.models import Order, OrderStatus, Trade
from pools.models import Pool, PoolKind
from tests.conftest import Market, client_for, drive, place

pytestmark = pytest.mark.django_db


def assert_same(plain: dict[str, Any], drf: Any) -> None:
    # Field by field first, so a failure names the field; then the keys' order and the JSON bytes.
    for name, value in drf.items():
        assert name in plain, name
        assert plain[name] == value, (name, plain[name], value)
        assert type(plain[name]) is type(value), (name, plain[name], value)
    assert list(plain) == list(drf)
    assert JSONRenderer().render(plain) == JSONRenderer().render(drf)


def test_orders_of_every_kind_and_state(market: Market) -> None:
    # given orders: resting, filled over several venues, a Market order (no price), a sub-dollar price,
    # one with a clientOrderId, one rejected, one cancelled
    resting = place(quantity=100, price="200.00", clientOrderId="shape-1")
    filled = place(quantity=2500, price="260.00")
    drive(filled)
    market_order = place(type="Market", quantity=10, timeInForce="IOC")
    drive(market_order)
    rejected = place(quantity=1_000_000, price="999999.99")
    cancelled = place(quantity=50, price="200.00")
    services.order_cancel(order_id=cancelled.pk, actor="desk")
    orders = [resting, filled, market_order, rejected, cancelled]
    assert filled.status == OrderStatus.FILLED
    assert filled.average_price is not None
    assert market_order.price is None
    assert rejected.status == OrderStatus.REJECTED
    assert rejected.reject_reason

    # when each is written both ways, as placed and as read back from the database
    fresh = Order.objects.select_related("customer", "ticker").filter(pk__in=[order.pk for order in orders])
    for order in [*orders, *fresh]:
        # then the two agree
        assert_same(order_output(order), OrderOutputSerializer(order).data)


def test_order_edge_values() -> None:
    # given an unsaved order with values the flow rarely makes: a 4-place price, fees to round half-even,
    # no clientOrderId, an average price at a half cent
    customer = Customer(customer_id="000009", name="x", email="x@example.com", initial_funds=Decimal("1"))
    ticker = Ticker(symbol="BRK.B", name="x")
    order = Order(
        order_id=uuid.uuid4(),
        customer=customer,
        ticker=ticker,
        direction="Sell",
        order_type="Limit",
        quantity=3,
        price=Decimal("0.1234"),
        time_in_force="GTC",
        client_order_id=None,
        status=OrderStatus.PARTIALLY_FILLED,
        filled_quantity=2,
        filled_notional=Decimal("0.2469"),
        fees=Decimal("0.125"),
        sequence=12,
        created_at=datetime(2022, 1, 31, 17, 41, 34, 884_999, tzinfo=UTC),
        updated_at=datetime(2022, 1, 31, 17, 41, 35, tzinfo=UTC),
    )

    # then the two agree (fees "0.12": half-even, as DRF's DecimalField)
    assert_same(order_output(order), OrderOutputSerializer(order).data)
    assert order_output(order)["fees"] == "0.12"


def test_trades_lit_and_dark_settled_and_not(market: Market) -> None:
    # given trades of a large order (dark and lit venues) and of a small one, half of them settled
    large = place(quantity=4000, price="260.00")
    drive(large)
    small = place(quantity=100, price="260.00")
    drive(small)
    trades = list(Trade.objects.select_related("order", "customer", "ticker", "pool").order_by("id"))
    assert {trade.pool.kind for trade in trades} == {PoolKind.DARK, PoolKind.LIT}
    for trade in trades[::2]:
        services.trade_settle(trade_id=trade.pk)
    trades = list(Trade.objects.select_related("order", "customer", "ticker", "pool").order_by("id"))
    assert any(trade.settlement_date is None for trade in trades)
    assert any(trade.settlement_date is not None for trade in trades)

    # when / then each trade is written the same both ways
    for trade in trades:
        assert_same(trade_output(trade), TradeOutputSerializer(trade).data)


def test_trade_edge_values() -> None:
    # given an unsaved dark print at a half-cent midpoint, a fee to round, not settled, of an unsplit order
    # and the same settled, of a split order
    customer = Customer(customer_id="000002", name="x", email="x@example.com", initial_funds=Decimal("1"))
    ticker = Ticker(symbol="COIN", name="x")
    pool = Pool(name="UBSA", kind=PoolKind.DARK)
    when = datetime(2022, 1, 31, 17, 41, 34, 884_000, tzinfo=UTC)
    for quantity, settled in ((1000, None), (8614, datetime(2022, 1, 31, 17, 41, 39, 192_000, tzinfo=UTC))):
        order = Order(order_id=uuid.uuid4(), order_type="Limit", quantity=quantity, created_at=when)
        trade = Trade(
            trade_id=uuid.uuid4(),
            order=order,
            customer=customer,
            ticker=ticker,
            pool=pool,
            direction="Buy",
            quantity=7,
            price=Decimal("161.9050"),
            fee=Decimal("0.005"),
            trade_date=when,
            settlement_date=settled,
        )

        # then
        assert_same(trade_output(trade), TradeOutputSerializer(trade).data)
        assert trade_output(trade)["price"] == "161.905"


def test_the_order_entry_answer_is_the_serializers(market: Market) -> None:
    # given a client placing an order through the API
    response = client_for("000002").post(
        "/api/orders",
        data=json.dumps(
            {"customerId": "000002", "direction": "Buy", "ticker": "COIN", "type": "Limit", "quantity": 5, "price": "1"}
        ),
        content_type="application/json",
    )

    # then its 201 body is what OrderOutputSerializer writes for the stored order
    assert response.status_code == 201
    order = Order.objects.select_related("customer", "ticker").get(order_id=response.json()["orderId"])
    assert response.json() == json.loads(JSONRenderer().render(OrderOutputSerializer(order).data))
