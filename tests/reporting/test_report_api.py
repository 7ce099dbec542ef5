"""The reporting endpoints against the hand-computed example of tests/reporting/test_aggregation.py.

Customer 000002 starts with F = 5,000,000.00 and 5,000 COIN; COIN closes 240.00 / 250.00 / 245.00 on
2024-03-06 / 07 / 08. On 03-07 it buys 100 @ 248.00 (fee 1.00) and sells 50 @ 251.50 (fee 0.50); on 03-08
it buys 20 @ 246.25 (fee 0.25). By hand (that test's docstring):
- 03-07: trade P&L 275.00, position P&L 50,000.00; 5,050 COIN worth 1,262,500.00; cash F - 12,226.50 =
  4,987,773.50; total value 6,250,273.50; average cost 249.9608.
- 03-08: trade P&L -25.00, position P&L -25,250.00; 5,070 COIN worth 1,242,150.00; cash F - 17,151.75 =
  4,982,848.25; total value 6,224,998.25; 3 trades, fees 1.75, invested 29,725.00.
- Without the sale (busted): 5,120 COIN at 245.00 = 1,254,400.00; cash F - 24,801.00 - 4,925.25 =
  4,970,273.75; total value 6,224,673.75.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from broker.models import Customer, PriceBar
from orders import services
from orders.api.serializers import format_time
from orders.models import Trade
from reporting import aggregation, valuation
from reporting.models import CustomerDay
from settlement import services as settlement_services
from tests.conftest import client_for, drive, make_ticker, place, staff_client
from tests.reporting.test_aggregation import DAY0, DAY1, DAY2, _bar
from tests.reporting.test_aggregation import example as example  # the fixture, requested by name

pytestmark = pytest.mark.django_db

CUSTOMER = "000002"


def _get(client: Any, path: str, **params: str) -> Any:
    return client.get(path, params)


def _ok(client: Any, path: str, **params: str) -> dict[str, Any]:
    response = _get(client, path, **params)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def _row(results: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    [row] = [row for row in results if row[key] == value]
    return row


# --- the reports (staff) -------------------------------------------------------------------------------


def test_the_customer_report_is_the_example_day(example: Customer) -> None:
    # when staff ask for 03-08, never aggregated before
    body = _ok(staff_client(), "/api/reports/customers", date=str(DAY2))

    # then it is computed and every field is the hand-computed one
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == Customer.objects.count() == len(body["results"])
    row = _row(body["results"], "customerId", CUSTOMER)
    updated = row.pop("updated")
    assert row == {
        "customerId": CUSTOMER,
        "date": "2024-03-08",
        "nrTrades": 1,
        "buyNotional": "4925.00",
        "sellNotional": "0.00",
        "commissionPaid": "0.25",
        "totalNrTrades": 3,
        "totalCommissionPaid": "1.75",
        "totalAmountInvested": "29725.00",
        "remainingFund": "4982848.25",
        "marketValue": "1242150.00",
        "tradePnl": "-25.00",
        "positionPnl": "-25250.00",
        "totalPnl": "-25275.00",
        "provisional": False,
    }
    assert updated.endswith("Z")
    # every other customer only held its 5,000 COIN while the price moved
    other = _row(body["results"], "customerId", "000001")
    assert (other["nrTrades"], other["positionPnl"], other["marketValue"]) == (0, "-25000.00", "1225000.00")


def test_the_customer_report_is_paginated(example: Customer) -> None:
    body = _ok(staff_client(), "/api/reports/customers", date=str(DAY2), pageSize="1", page="2")
    assert body["count"] == Customer.objects.count()
    assert [row["customerId"] for row in body["results"]] == ["000002"]
    assert body["next"] is not None
    assert body["previous"] is not None


def test_the_ticker_report_is_the_example_day(example: Customer) -> None:
    body = _ok(staff_client(), "/api/reports/tickers", date=str(DAY1))

    assert body["count"] == 1
    [row] = body["results"]
    assert row.pop("updated").endswith("Z")
    assert row == {
        "ticker": "COIN",
        "date": "2024-03-07",
        "nrTrades": 2,
        "volume": 150,
        "notional": "37375.00",
        "vwap": "249.1667",
        "open": "248.00",
        "high": "251.50",
        "low": "248.00",
        "last": "251.50",
        "buyVolume": 100,
        "sellVolume": 50,
        "litVolume": 150,
        "darkVolume": 0,
        "fees": "1.50",
        "close": "250.00",
        "closeDate": "2024-03-07",
        "provisional": False,
    }


@pytest.mark.parametrize("path", ["/api/reports/customers", "/api/reports/tickers"])
def test_the_reports_are_staff_only(example: Customer, path: str) -> None:
    # when a client token asks, even with a valid date / then 403, and nothing was computed
    response = _get(client_for(CUSTOMER), path, date=str(DAY2))
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]
    assert not CustomerDay.objects.exists()
    # and without credentials it is a 401
    assert _get(type(staff_client())(), path, date=str(DAY2)).status_code == 401


# --- a customer's positions, P&L and portfolio ----------------------------------------------------------


def test_positions_are_the_example_snapshot(example: Customer) -> None:
    body = _ok(client_for(CUSTOMER), f"/api/customers/{CUSTOMER}/positions", date=str(DAY1))

    assert body == {
        "customerId": CUSTOMER,
        "date": "2024-03-07",
        "provisional": False,
        "positions": [
            {
                "ticker": "COIN",
                "quantity": 5050,
                "averageCost": "249.9608",
                "close": "250.00",
                "closeDate": "2024-03-07",
                "marketValue": "1262500.00",
                "tradePnl": "275.00",
                "positionPnl": "50000.00",
                "totalPnl": "50275.00",
            }
        ],
    }


def test_pnl_lists_each_day_from_the_customer_days(example: Customer) -> None:
    # when: Thursday to Sunday; the weekend had no trades and is no XNYS session
    body = _ok(client_for(CUSTOMER), f"/api/customers/{CUSTOMER}/pnl", start=str(DAY1), end="2024-03-10")

    # then
    assert body == {
        "customerId": CUSTOMER,
        "start": "2024-03-07",
        "end": "2024-03-10",
        "days": [
            {
                "date": "2024-03-07",
                "tradePnl": "275.00",
                "positionPnl": "50000.00",
                "totalPnl": "50275.00",
                "cash": "4987773.50",
                "marketValue": "1262500.00",
                "totalValue": "6250273.50",
                "provisional": False,
            },
            {
                "date": "2024-03-08",
                "tradePnl": "-25.00",
                "positionPnl": "-25250.00",
                "totalPnl": "-25275.00",
                "cash": "4982848.25",
                "marketValue": "1242150.00",
                "totalValue": "6224998.25",
                "provisional": False,
            },
        ],
    }


def test_the_portfolio_at_a_close_is_the_example_and_agrees_with_the_pnl_row(example: Customer) -> None:
    client = client_for(CUSTOMER)
    body = _ok(client, f"/api/customers/{CUSTOMER}/portfolio", date=str(DAY2))

    assert body.pop("asOf").endswith("Z")
    assert body == {
        "customerId": CUSTOMER,
        "date": "2024-03-08",
        "cash": "4982848.25",
        "positions": [
            {
                "ticker": "COIN",
                "quantity": 5070,
                "close": "245.00",
                "closeDate": "2024-03-08",
                "marketValue": "1242150.00",
            }
        ],
        "totalValue": "6224998.25",
    }
    day1 = _ok(client, f"/api/customers/{CUSTOMER}/portfolio", date=str(DAY1))
    assert (day1["cash"], day1["positions"][0]["quantity"], day1["totalValue"]) == ("4987773.50", 5050, "6250273.50")


def test_portfolio_total_is_cash_plus_quantity_times_the_bar_closes_to_the_cent(example: Customer) -> None:
    # given a second holding whose close has six places, transferred in today
    abcd = make_ticker("ABCD", "12.00")
    _bar(abcd, DAY2, "12.345678")
    settlement_services.customer_transfer_in(
        customer=example, symbol="ABCD", quantity=333, unit_cost=Decimal("12.00"), reference="test:ABCD"
    )
    today = aggregation.today()

    # when
    body = _ok(client_for(CUSTOMER), f"/api/customers/{CUSTOMER}/portfolio", date=str(today))

    # then each close is its last bar's, and the total is cash + sum(quantity x close) rounded once
    positions = {row["ticker"]: row for row in body["positions"]}
    assert set(positions) == {"ABCD", "COIN"}
    for symbol, row in positions.items():
        bar = PriceBar.objects.filter(ticker__symbol=symbol, date__lte=today).latest("date")
        assert (Decimal(row["close"]), row["closeDate"]) == (bar.close, str(bar.date))
    assert positions["ABCD"] == {
        "ticker": "ABCD",
        "quantity": 333,
        "close": "12.345678",
        "closeDate": "2024-03-08",
        "marketValue": "4111.11",
    }
    exact = sum(row["quantity"] * Decimal(row["close"]) for row in positions.values())
    assert exact == Decimal("1246261.110774")
    assert Decimal(body["totalValue"]) == Decimal(body["cash"]) + exact.quantize(Decimal("0.01"))
    assert (body["cash"], body["totalValue"]) == ("4982848.25", "6229109.36")


def test_the_valuation_is_one_query(example: Customer, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        portfolio = valuation.portfolio_at(customer_id=example.pk, day=DAY2, as_of=timezone.now())
    assert portfolio.total_value == Decimal("6224998.25")


def test_as_of_values_the_books_before_a_later_bust(example: Customer) -> None:
    # given the valuation at T, then the sale busted after T
    client = client_for(CUSTOMER)
    path = f"/api/customers/{CUSTOMER}/portfolio"
    moment = timezone.now()
    sale = Trade.objects.get(customer=example, direction="Sell", busted=False)
    services.trade_correct(trade_id=sale.pk, reason="clearly erroneous", actor="desk", bust=True)

    # when
    then = _ok(client, path, date=str(DAY2), asOf=moment.isoformat())
    now = _ok(client, path, date=str(DAY2))

    # then asOf T still sees the sale; without asOf it is gone
    assert (then["cash"], then["positions"][0]["quantity"], then["totalValue"]) == ("4982848.25", 5070, "6224998.25")
    assert (now["cash"], now["positions"][0]["quantity"], now["totalValue"]) == ("4970273.75", 5120, "6224673.75")
    assert then["asOf"] == format_time(moment)
    # and a moment before the trades were made sees only the funding and the transfer in
    before = _ok(client, path, date=str(DAY2), asOf="2024-03-07T09:00:00-05:00")
    assert (before["cash"], before["positions"][0]["quantity"]) == ("5000000.00", 5000)


@pytest.mark.parametrize("endpoint", ["positions", "pnl", "portfolio"])
def test_a_client_reads_only_its_own_customer(example: Customer, endpoint: str) -> None:
    params = {"start": str(DAY1), "end": str(DAY2)} if endpoint == "pnl" else {"date": str(DAY2)}
    other = _get(client_for("000003"), f"/api/customers/{CUSTOMER}/{endpoint}", **params)
    assert other.status_code == 403
    assert _get(client_for(CUSTOMER), f"/api/customers/{CUSTOMER}/{endpoint}", **params).status_code == 200
    assert _get(staff_client(), f"/api/customers/999999/{endpoint}", **params).status_code == 404


# --- bad input ------------------------------------------------------------------------------------------


def _tomorrow() -> str:
    return str(aggregation.today() + timedelta(days=1))


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/api/reports/customers", {}, {"date"}),
        ("/api/reports/customers", {"date": "2024-13-01"}, {"date"}),
        ("/api/reports/tickers", {"date": "08/03/2024"}, {"date"}),
        ("/api/reports/tickers", {"date": "1969-12-31"}, {"date"}),
        ("/api/reports/tickers", {"date": "tomorrow"}, {"date"}),
        (f"/api/customers/{CUSTOMER}/positions", {"date": "2024-03-08T00:00:00Z"}, {"date"}),
        (f"/api/customers/{CUSTOMER}/pnl", {"start": "2024-03-07"}, {"end"}),
        (f"/api/customers/{CUSTOMER}/pnl", {"start": "x", "end": "y"}, {"start", "end"}),
        (f"/api/customers/{CUSTOMER}/pnl", {"start": "2024-03-08", "end": "2024-03-07"}, {"start"}),
        (f"/api/customers/{CUSTOMER}/pnl", {"start": "2020-01-01", "end": "2024-03-07"}, {"end"}),
        (f"/api/customers/{CUSTOMER}/portfolio", {"date": "2024-03-08", "asOf": "2024-03-08T10:00:00"}, {"asOf"}),
        (f"/api/customers/{CUSTOMER}/portfolio", {"date": "2024-03-08", "asOf": "yesterday"}, {"asOf"}),
        (f"/api/customers/{CUSTOMER}/portfolio", {"date": "2024-03-08", "asOf": "0001-01-01T00:00:00+01:00"}, {"asOf"}),
        (f"/api/customers/{CUSTOMER}/portfolio", {"asOf": "2024-03-08 10:00:00 05:00"}, {"date", "asOf"}),
    ],
)
def test_bad_or_missing_dates_are_a_400_naming_the_parameter(
    example: Customer, path: str, params: dict[str, str], named: set[str]
) -> None:
    params = {name: _tomorrow() if value == "tomorrow" else value for name, value in params.items()}
    response = _get(staff_client(), path, **params)
    assert response.status_code == 400, response.content
    assert set(response.json()) == named
    assert all(isinstance(message, str) for messages in response.json().values() for message in messages)


# --- on demand ------------------------------------------------------------------------------------------


def test_today_is_computed_on_demand_and_says_provisional(example: Customer) -> None:
    # given the example's days stored, and a trade made now
    aggregation.days_aggregate([DAY1, DAY2])
    order = place(CUSTOMER, direction="Buy", type="Market", quantity=10, timeInForce="IOC")
    drive(order)
    today = aggregation.today()
    traded = Trade.objects.filter(order=order, busted=False).count()
    assert traded
    assert not CustomerDay.objects.filter(date=today).exists()

    # when staff ask for today
    staff = staff_client()
    body = _ok(staff, "/api/reports/customers", date=str(today))

    # then today was computed, and says it is provisional
    row = _row(body["results"], "customerId", CUSTOMER)
    assert (row["date"], row["nrTrades"], row["totalNrTrades"], row["provisional"]) == (
        str(today),
        traded,
        3 + traded,
        True,
    )
    assert CustomerDay.objects.get(customer=example, date=today).provisional is True
    positions = _ok(client_for(CUSTOMER), f"/api/customers/{CUSTOMER}/positions", date=str(today))
    assert positions["provisional"] is True
    bought = sum(Trade.objects.filter(order=order, busted=False).values_list("quantity", flat=True))
    assert positions["positions"][0]["quantity"] == 5070 + bought

    # and a provisional day asked again counts the trades made since
    again = place(CUSTOMER, direction="Buy", type="Market", quantity=10, timeInForce="IOC")
    drive(again)
    more = Trade.objects.filter(order=again, busted=False).count()
    row = _row(_ok(staff, "/api/reports/customers", date=str(today))["results"], "customerId", CUSTOMER)
    assert (row["nrTrades"], row["provisional"]) == (traded + more, True)


def test_a_pnl_range_computes_at_most_seven_missing_days_the_newest_first(example: Customer) -> None:
    # given nothing stored; March 2024 from the 1st to the 15th has 11 sessions
    sessions = aggregation.days_to_report(DAY1 - timedelta(days=6), DAY1 + timedelta(days=8))
    assert len(sessions) == 11

    # when
    body = _ok(client_for(CUSTOMER), f"/api/customers/{CUSTOMER}/pnl", start="2024-03-01", end="2024-03-15")

    # then the seven newest sessions were computed and listed; the older ones wait for recover_reports
    assert [row["date"] for row in body["days"]] == [str(day) for day in sessions[-7:]]
    assert set(CustomerDay.objects.values_list("date", flat=True)) == set(sessions[-7:])
    # the next request computes the rest; before its funding (03-06) the customer had no day at all
    body = _ok(client_for(CUSTOMER), f"/api/customers/{CUSTOMER}/pnl", start="2024-03-01", end="2024-03-15")
    assert [row["date"] for row in body["days"]] == [str(day) for day in sessions if day >= DAY0]
    friday = _row(body["days"], "date", "2024-03-08")
    assert (friday["cash"], friday["totalValue"]) == ("4982848.25", "6224998.25")
