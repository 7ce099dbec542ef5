"""Pre-trade risk: buys reserve cash, sells reserve shares; no overspending, no shorting, also concurrently."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from broker import services as broker_services
from broker.models import Customer
from orders import services
from orders.models import Order, OrderStatus, Trade
from settlement import services as settlement_services
from settlement.models import CASH_ASSET, Reservation
from settlement.selectors import cash_balance, holdings
from tests.conftest import Market, drive, make_customers, make_pools, make_ticker, place
from tests.invariants import ledger_violations

pytestmark = pytest.mark.django_db

# 100 shares at a 260.00 limit reserve (260.00 + 0.003 highest fee rate + 0.01 rounding buffer) x 100
RESERVE_PER_ORDER = Decimal("26001.30")


def settle_all() -> None:
    services.trades_settle(trade_ids=list(Trade.objects.values_list("pk", flat=True)))


def test_buy_beyond_buying_power_is_rejected_and_recorded(market: Market) -> None:
    # given 000008 with 250,000 of cash
    # when it buys 1,000 COIN at 260 (260,013 needed)
    order = place("000008", quantity=1000, price="260.00")

    # then the order is recorded as Rejected, says why, reserves nothing and never routes
    assert order.status == OrderStatus.REJECTED
    assert order.reject_reason.startswith("insufficient funds")
    assert not Reservation.objects.filter(order_ref=order.pk).exists()
    drive(order)
    assert not order.children.exists()


def test_sell_beyond_the_position_is_rejected(market: Market) -> None:
    # given 5,000 COIN held (the opening position)
    order = place("000003", direction="Sell", quantity=5001, price="250.00")

    assert order.status == OrderStatus.REJECTED
    assert order.reject_reason.startswith("insufficient position")


def test_an_open_buy_holds_its_reserve_until_cancelled(market: Market) -> None:
    # given a resting buy
    customer = market["customers"]["000003"]
    order = place("000003", quantity=100, price="200.00")
    drive(order)
    balance = cash_balance(customer_id=customer.pk)

    # then its reserve is held while it rests, and released when it is cancelled
    held = balance - settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET)
    assert held == Decimal("20001.30")  # (200.00 + 0.003 + 0.01) x 100
    services.order_cancel(order_id=order.pk, actor=None)
    assert settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET) == balance


def test_fills_consume_and_settlement_clears_the_reservation(market: Market) -> None:
    # given a filled buy, not yet settled
    customer = market["customers"]["000002"]
    order = place(quantity=2500, price="260.00")
    drive(order)
    reservation = Reservation.objects.get(order_ref=order.pk)
    trades = list(Trade.objects.filter(order=order))
    cost = sum(
        (
            settlement_services.trade_cost(direction="Buy", quantity=t.quantity, price=t.price, fee=t.fee)
            for t in trades
        ),
        Decimal(0),
    )

    # then the filled order holds exactly its trades' cost, pending settlement
    assert (reservation.open_units, reservation.pending) == (0, cost)
    assert settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET) == customer.initial_funds - cost

    # when the trades settle, the cost has left the ledger and nothing is held any more
    settle_all()
    reservation.refresh_from_db()
    assert reservation.pending == 0
    assert cash_balance(customer_id=customer.pk) == customer.initial_funds - cost
    assert settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET) == customer.initial_funds - cost
    assert ledger_violations() == []


def test_market_buy_reserves_and_trades_within_its_protection_price(market: Market) -> None:
    # when a Market buy is placed (COIN reference 256.62, 5% collar)
    order = place(type="Market", quantity=3000)
    drive(order)

    # then its protection price bounded both the reserve and every fill
    assert order.protection_price == Decimal("269.4600")
    assert order.status == OrderStatus.FILLED
    assert all(trade.price <= order.protection_price for trade in Trade.objects.filter(order=order))


def test_selling_needs_settled_shares_and_reserves_them(market: Market) -> None:
    customer = market["customers"]["000004"]
    first = place("000004", direction="Sell", quantity=3000, price="200.00")
    second = place("000004", direction="Sell", quantity=2500, price="200.00")

    assert first.status == OrderStatus.NEW  # accepted: 5,000 held, 3,000 reserved
    assert second.status == OrderStatus.REJECTED  # only 2,000 left
    assert settlement_services.available(customer_id=customer.pk, asset="COIN") == 2000


def _concurrently(count: int, action: object) -> list[object]:
    barrier = threading.Barrier(count)
    results: list[object] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            result = action()  # type: ignore[operator]
            with lock:
                results.append(result)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_buys_when_cash_covers_three() -> None:
    # given a customer whose cash covers exactly three of the orders
    make_pools()
    make_ticker()
    customer = broker_services.customer_upsert(
        customer_id="000042", name="Tight", email="t@example.com", initial_funds=3 * RESERVE_PER_ORDER + 1000
    )
    settlement_services.customer_fund_initial(customer=customer)

    # when ten marketable buys arrive at once
    orders = _concurrently(10, lambda: place("000042", quantity=100, price="260.00"))

    # then exactly three were accepted and seven rejected for insufficient funds
    statuses = sorted(order.status for order in orders)  # type: ignore[attr-defined]
    assert statuses == [OrderStatus.NEW] * 3 + [OrderStatus.REJECTED] * 7
    rejected = Order.objects.filter(customer=customer, status=OrderStatus.REJECTED)
    assert all(order.reject_reason.startswith("insufficient funds") for order in rejected)
    # what is left could not fund a fourth order (a worker may already be filling the three, at
    # prices at or better than their limit, which only releases part of their reserve)
    available = settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET)
    assert Decimal(1000) <= available < RESERVE_PER_ORDER
    # and once they fill and settle, the cash is still not below zero
    for order in Order.objects.filter(customer=customer, status=OrderStatus.NEW):
        drive(order)
    settle_all()
    assert cash_balance(customer_id=customer.pk) >= 0
    assert Customer.objects.get(pk=customer.pk).initial_funds - cash_balance(customer_id=customer.pk) > 0


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_sells_when_shares_cover_three() -> None:
    # given a customer holding 300 shares
    make_pools()
    make_ticker()
    make_customers()
    customer = Customer.objects.get(customer_id="000007")
    settlement_services.customer_transfer_in(
        customer=customer, symbol="COIN", quantity=300, unit_cost=Decimal("250"), reference="t:000007"
    )

    # when ten sells of 100 arrive at once
    orders = _concurrently(10, lambda: place("000007", direction="Sell", quantity=100, price="250.00"))

    # then exactly three were accepted and no share can be sold twice
    statuses = sorted(order.status for order in orders)  # type: ignore[attr-defined]
    assert statuses == [OrderStatus.NEW] * 3 + [OrderStatus.REJECTED] * 7
    assert settlement_services.available(customer_id=customer.pk, asset="COIN") == 0
    for order in Order.objects.filter(customer=customer, status=OrderStatus.NEW):
        drive(order)
    settle_all()
    assert holdings(customer_id=customer.pk)["COIN"].quantity >= 0
