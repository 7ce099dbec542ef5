"""The nightly aggregation against a hand-computed example, and its idempotency.

Customer 000002 starts (2024-03-06, before the example) with its initial funds F = 5,000,000.00 and 5,000
COIN transferred in at 250.00. COIN closes 240.00 on 2024-03-06, 250.00 on 03-07 and 245.00 on 03-08.

  2024-03-07 10:00 New York  Buy  100 @ 248.00, fee 1.00
  2024-03-07 11:00           Sell  50 @ 251.50, fee 0.50
  2024-03-08 10:00           Buy   20 @ 246.25, fee 0.25

By hand, 03-07: carried 5,000 -> position P&L (250 - 240) x 5,000 = 50,000.00; trade P&L
(250 - 248) x 100 + (250 - 251.50) x -50 = 200 + 75 = 275.00; 5,050 held, worth 1,262,500.00; cash
F - 24,801.00 + 12,574.50 = F - 12,226.50; average cost (1,250,000 + 24,800) / 5,100 = 249.9608.
03-08: position P&L (245 - 250) x 5,050 = -25,250.00; trade P&L (245 - 246.25) x 20 = -25.00; 5,070
held, worth 1,242,150.00; cash F - 12,226.50 - 4,925.25 = F - 17,151.75; totals: 3 trades, fees 1.75,
invested 29,725.00; average cost 1,279,725 / 5,120 = 249.9463.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.forms.models import model_to_dict

from broker.models import Customer, PriceBar, Ticker
from orders.models import Trade
from pools.models import Pool, PoolKind
from reporting import aggregation
from reporting.models import CustomerDay, PositionSnapshot, TickerDay
from settlement.models import LedgerEntry
from tests.conftest import Market, drive, place

DAY0, DAY1, DAY2 = date(2024, 3, 6), date(2024, 3, 7), date(2024, 3, 8)
F = Decimal("5000000.00")


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=aggregation.MARKET_TZ)


def _bar(ticker: Ticker, day: date, close: str) -> None:
    price = Decimal(close)
    prices = {"open": price, "high": price, "low": price, "close": price, "adj_close": price}
    PriceBar.objects.create(ticker=ticker, date=day, **prices, volume=1, source="test")


def make_example(market: Market, days: tuple[date, date, date]) -> Customer:
    """The example of this module's docstring on the three `days` (before, first, second day)."""
    before, first, second = days
    ticker = market["ticker"]
    for day, close in ((before, "240.00"), (first, "250.00"), (second, "245.00")):
        _bar(ticker, day, close)
    # The funding and the transfers in happened before the example's days. The ledger refuses any
    # update (a trigger); the test's own transaction, rolled back at its end, sets it aside.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the postings' deferred balance checks, now
        cursor.execute("ALTER TABLE settlement_ledgerentry DISABLE TRIGGER settlement_ledger_append_only")
        LedgerEntry.objects.update(created_at=at(before, 9))
        cursor.execute("ALTER TABLE settlement_ledgerentry ENABLE TRIGGER settlement_ledger_append_only")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    customer = market["customers"]["000002"]
    lit = Pool.objects.filter(kind=PoolKind.LIT).order_by("pk").first()
    rows = [
        ("Buy", 100, "248.00", "1.00", at(first, 10)),
        ("Sell", 50, "251.50", "0.50", at(first, 11)),
        ("Buy", 20, "246.25", "0.25", at(second, 10)),
    ]
    for direction, quantity, price, fee, when in rows:
        order = place(direction=direction, type="Market", quantity=quantity, timeInForce="IOC")
        drive(order)
        trades = list(Trade.objects.filter(order=order).order_by("pk"))
        assert trades, f"the {direction} order did not trade"
        # Exactly the example's trade: the first fill becomes it; any other fill of the order is busted,
        # and dated with it so no day of its own is reported.
        Trade.objects.filter(pk=trades[0].pk).update(
            quantity=quantity, price=Decimal(price), fee=Decimal(fee), trade_date=when, pool=lit
        )
        Trade.objects.filter(pk__in=[trade.pk for trade in trades[1:]]).update(busted=True, trade_date=when)
    return customer


@pytest.fixture
def example(market: Market) -> Customer:
    return make_example(market, (DAY0, DAY1, DAY2))


def _rows(model: Any, **filters: Any) -> list[dict[str, Any]]:
    return [
        {key: value for key, value in model_to_dict(row).items() if key not in {"id", "updated"}}
        for row in model.objects.filter(**filters).order_by(*model._meta.ordering)  # the natural key, not new ids
    ]


def test_two_days_match_the_hand_computed_example(example: Customer) -> None:
    coin = Ticker.objects.get(symbol="COIN")
    aggregation.days_aggregate([DAY1, DAY2])

    first = PositionSnapshot.objects.get(customer=example, ticker=coin, date=DAY1)
    assert (first.quantity, first.close, first.close_date) == (5050, Decimal("250.000000"), DAY1)
    assert first.market_value == Decimal("1262500.00")
    assert (first.trade_pnl, first.position_pnl, first.total_pnl) == (
        Decimal("275.00"),
        Decimal("50000.00"),
        Decimal("50275.00"),
    )
    assert first.average_cost == Decimal("249.9608")
    second = PositionSnapshot.objects.get(customer=example, ticker=coin, date=DAY2)
    assert (second.quantity, second.market_value) == (5070, Decimal("1242150.00"))
    assert (second.trade_pnl, second.position_pnl, second.total_pnl) == (
        Decimal("-25.00"),
        Decimal("-25250.00"),
        Decimal("-25275.00"),
    )
    assert second.average_cost == Decimal("249.9463")

    day1 = CustomerDay.objects.get(customer=example, date=DAY1)
    assert (day1.nr_trades, day1.buy_notional, day1.sell_notional, day1.commission_paid) == (
        2,
        Decimal("24800.00"),
        Decimal("12575.00"),
        Decimal("1.50"),
    )
    assert day1.remaining_fund == F - Decimal("12226.50")
    assert (day1.market_value, day1.total_pnl) == (Decimal("1262500.00"), Decimal("50275.00"))
    day2 = CustomerDay.objects.get(customer=example, date=DAY2)
    assert (day2.nr_trades, day2.total_nr_trades) == (1, 3)
    assert (day2.total_commission_paid, day2.total_amount_invested) == (Decimal("1.75"), Decimal("29725.00"))
    assert day2.remaining_fund == F - Decimal("17151.75")
    assert (day2.trade_pnl, day2.position_pnl, day2.total_pnl) == (
        Decimal("-25.00"),
        Decimal("-25250.00"),
        Decimal("-25275.00"),
    )
    assert (day1.provisional, day2.provisional) == (False, False)

    ticker_day = TickerDay.objects.get(ticker=coin, date=DAY1)
    assert (ticker_day.nr_trades, ticker_day.volume, ticker_day.notional) == (2, 150, Decimal("37375.00"))
    assert ticker_day.vwap == Decimal("249.1667")
    assert (ticker_day.open, ticker_day.high, ticker_day.low, ticker_day.last) == (
        Decimal("248.0000"),
        Decimal("251.5000"),
        Decimal("248.0000"),
        Decimal("251.5000"),
    )
    assert (ticker_day.buy_volume, ticker_day.sell_volume) == (100, 50)
    assert (ticker_day.lit_volume, ticker_day.dark_volume, ticker_day.fees) == (150, 0, Decimal("1.50"))
    assert (ticker_day.close, ticker_day.close_date) == (Decimal("250.000000"), DAY1)

    # Every other customer holds its 5,000 COIN: only the price moved them.
    other = PositionSnapshot.objects.get(customer__customer_id="000001", ticker=coin, date=DAY2)
    assert (other.quantity, other.trade_pnl, other.position_pnl) == (5000, Decimal("0.00"), Decimal("-25000.00"))


def test_a_weekend_day_carries_the_friday_close(example: Customer) -> None:
    saturday = date(2024, 3, 9)
    aggregation.days_aggregate([DAY1, DAY2, saturday])
    row = PositionSnapshot.objects.get(customer=example, date=saturday)
    # No bar on Saturday: Friday's close values it, and nothing moved.
    assert (row.close_date, row.position_pnl, row.trade_pnl) == (DAY2, Decimal("0.00"), Decimal("0.00"))
    assert CustomerDay.objects.get(customer=example, date=saturday).remaining_fund == F - Decimal("17151.75")


def test_aggregating_twice_and_rebuilding_leave_identical_rows(example: Customer) -> None:
    aggregation.days_aggregate([DAY1, DAY2])
    before = [_rows(model) for model in (CustomerDay, PositionSnapshot, TickerDay)]
    assert all(before)

    aggregation.days_aggregate([DAY1, DAY2])
    assert [_rows(model) for model in (CustomerDay, PositionSnapshot, TickerDay)] == before

    # A rebuild from trades alone: every row gone, then the days again from the first trade.
    for model in (CustomerDay, PositionSnapshot, TickerDay):
        model.objects.all().delete()
    aggregation.days_aggregate([DAY2, DAY1])  # order given does not matter
    assert [_rows(model) for model in (CustomerDay, PositionSnapshot, TickerDay)] == before


def test_a_day_aggregated_alone_equals_the_day_after_its_predecessor(example: Customer) -> None:
    """Day 2 with no stored day before it counts from the beginning: the same rows as after day 1."""
    aggregation.days_aggregate([DAY2])
    alone = _rows(CustomerDay, date=DAY2), _rows(PositionSnapshot, date=DAY2)
    for model in (CustomerDay, PositionSnapshot, TickerDay):
        model.objects.all().delete()
    aggregation.days_aggregate([DAY1, DAY2])
    assert (_rows(CustomerDay, date=DAY2), _rows(PositionSnapshot, date=DAY2)) == alone


def test_a_bust_after_aggregation_changes_its_day_and_the_days_after(example: Customer) -> None:
    aggregation.days_aggregate([DAY1, DAY2])
    sell = Trade.objects.get(customer=example, direction="Sell", busted=False)
    Trade.objects.filter(pk=sell.pk).update(busted=True)
    aggregation.days_after_correction(DAY1)

    day1 = CustomerDay.objects.get(customer=example, date=DAY1)
    assert (day1.nr_trades, day1.sell_notional, day1.trade_pnl) == (1, Decimal("0.00"), Decimal("200.00"))
    day2 = CustomerDay.objects.get(customer=example, date=DAY2)
    # Carried forward: 50 more shares held, the sale's cash gone.
    assert day2.remaining_fund == F - Decimal("24801.00") - Decimal("4925.25")
    assert PositionSnapshot.objects.get(customer=example, date=DAY2).quantity == 5120


def test_an_amendment_through_the_service_changes_its_day(example: Customer) -> None:
    """The sale of 03-07 amended to 252.00 through the correction service (as Operations do), then
    re-aggregated as the task queued after its commit does: the sale's trade P&L becomes
    (250 - 252) x -50 = 100.00, the day's 200 + 100 = 300.00."""
    from orders import services

    aggregation.days_aggregate([DAY1, DAY2])
    sell = Trade.objects.get(customer=example, direction="Sell", busted=False)
    services.trade_correct(trade_id=sell.pk, price=Decimal("252.00"), reason="venue price correction", actor="ops")
    aggregation.days_after_correction(DAY1)

    day1 = CustomerDay.objects.get(customer=example, date=DAY1)
    assert (day1.sell_notional, day1.trade_pnl) == (Decimal("12600.00"), Decimal("300.00"))
    # The fee is the amended trade's own (the service recomputes it); cash carries into the next day.
    amended = Trade.objects.get(pk=sell.pk)
    assert CustomerDay.objects.get(customer=example, date=DAY2).remaining_fund == (
        F - Decimal("24801.00") + (Decimal("12600.00") - amended.fee) - Decimal("4925.25")
    )


def test_a_run_in_several_transactions_equals_one_day_at_a_time(
    example: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`days_aggregate` takes its days `DAYS_PER_TRANSACTION` at a time; the batch boundaries (here every
    two days, over a weekend that carries Friday's close) leave the rows a day-by-day run writes."""
    days = [DAY1, DAY2, date(2024, 3, 9), date(2024, 3, 10), date(2024, 3, 11)]
    for day in days:
        aggregation.day_aggregate(day)
    one_at_a_time = [_rows(model) for model in (CustomerDay, PositionSnapshot, TickerDay)]
    for model in (CustomerDay, PositionSnapshot, TickerDay):
        model.objects.all().delete()

    monkeypatch.setattr(aggregation, "DAYS_PER_TRANSACTION", 2)
    assert aggregation.days_aggregate(days) == 5

    assert [_rows(model) for model in (CustomerDay, PositionSnapshot, TickerDay)] == one_at_a_time
    assert {row["date"] for row in one_at_a_time[0]} == set(days)


def _day_statement_runs() -> tuple[int, int]:
    """How many versions of the day statement are prepared on this connection (psycopg prepares one per
    set of parameter types: a day with no stored day before it sends `prev` as an untyped NULL), and how
    many times they ran (generic plus custom plans)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT COUNT(*), COALESCE(SUM(generic_plans + custom_plans), 0) FROM pg_prepared_statements
               WHERE statement LIKE %s""",
            ["%WITH trades AS MATERIALIZED%"],
        )
        prepared, runs = cursor.fetchone()
    return prepared, runs


def test_the_day_statement_is_prepared_once_and_reused(example: Customer) -> None:
    # given the day statement has run on this connection, with and without a previous day
    aggregation.days_aggregate([DAY1, DAY2])
    prepared, runs = _day_statement_runs()
    assert 1 <= prepared <= 2

    # when six more days run
    aggregation.days_aggregate([date(2024, 3, day) for day in range(9, 15)])

    # then the statements already prepared ran them
    assert _day_statement_runs() == (prepared, runs + 6)
