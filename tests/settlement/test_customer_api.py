"""GET /api/customers/{id} and /holdings: figures derived from the ledger; who may see them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders import services
from orders.models import Trade
from tests.conftest import Market, client_for, drive, place, staff_client

pytestmark = pytest.mark.django_db


def test_customer_figures_follow_trades_settlement_and_reservations(market: Market) -> None:
    # given a settled buy, an unsettled buy and a resting buy for 000002 (5,000,000 of cash)
    customer = market["customers"]["000002"]
    first = place(quantity=1000, price="260.00")
    drive(first)
    services.trades_settle(trade_ids=list(Trade.objects.filter(order=first).values_list("pk", flat=True)))
    second = place(quantity=500, price="260.00")
    drive(second)
    resting = place(quantity=100, price="200.00")
    drive(resting)

    # when the client asks for its customer resource
    body = client_for("000002").get("/api/customers/000002").json()

    # then cash, reservations and totals are exactly what the trades imply
    settled_trades = Trade.objects.filter(order=first)
    unsettled_trades = Trade.objects.filter(order=second)
    cost_first = sum((t.price * t.quantity).quantize(Decimal("0.01")) + t.fee for t in settled_trades)
    cost_second = sum((t.price * t.quantity).quantize(Decimal("0.01")) + t.fee for t in unsettled_trades)
    assert Decimal(body["settledCash"]) == customer.initial_funds - cost_first
    assert Decimal(body["unsettledCash"]) == -cost_second
    assert Decimal(body["reservedCash"]) == cost_second + Decimal("20001.30")  # unsettled buy + resting reserve
    assert Decimal(body["remainingFund"]) == Decimal(body["settledCash"]) - Decimal(body["reservedCash"])
    assert body["nrTrades"] == settled_trades.count() + unsettled_trades.count()
    assert Decimal(body["totalCommissionPaid"]) == sum(t.fee for t in Trade.objects.all())
    assert set(body) >= {"remainingFund", "totalCommissionPaid", "nrTrades", "totalAmountInvested", "updated"}


def test_holdings_show_quantity_cost_value_and_pnl(market: Market) -> None:
    # given the opening 5,000 COIN at 250.00 and a settled buy of 1,000
    order = place("000003", quantity=1000, price="260.00")
    drive(order)
    services.trades_settle(trade_ids=list(Trade.objects.values_list("pk", flat=True)))

    body = client_for("000003").get("/api/customers/000003/holdings").json()

    (coin,) = body["holdings"]
    assert coin["ticker"] == "COIN"
    assert coin["quantity"] == 6000
    assert Decimal(coin["marketPrice"]) == Decimal("256.62")
    assert Decimal(coin["marketValue"]) == Decimal("256.62") * 6000
    cost = Decimal("250.00") * 5000 + sum(t.price * t.quantity for t in Trade.objects.filter(order=order))
    assert Decimal(coin["averageCost"]) == (cost / 6000).quantize(Decimal("0.0001"))
    assert Decimal(coin["unrealizedPnl"]) == (Decimal("256.62") * 6000 - cost).quantize(Decimal("0.01"))
    assert Decimal(coin["realizedPnl"]) == 0


@pytest.mark.parametrize("path", ["/api/customers/000003", "/api/customers/000003/holdings"])
def test_a_client_sees_only_its_own_customer(market: Market, path: str) -> None:
    assert client_for("000002").get(path).status_code == 403
    assert client_for("000003").get(path).status_code == 200
    assert staff_client().get(path).status_code == 200
    assert staff_client().get("/api/customers/999999").status_code == 404
