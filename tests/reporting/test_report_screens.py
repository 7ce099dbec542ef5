"""The report screens server-side: who may open them, what the statement and ticker pages show against the
hand-computed example (tests/reporting/test_aggregation.py), that each CSV holds the page's rows, the
statement's query budget with a year of days, empty states and bad dates."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from broker.models import Customer, Ticker
from orders import roles
from reporting import aggregation
from reporting.models import CustomerDay, PositionSnapshot, TickerDay
from tests.conftest import make_customers, make_ticker
from tests.reporting.test_aggregation import DAY1, DAY2, F, example  # noqa: F401 - `example` is a fixture
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db


def logged_in(username: str = "trader", group: str = roles.TRADER) -> Client:
    staff_user(username, group)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def csv_rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def embedded_series(html: str, script_id: str) -> list[dict[str, str]]:
    """What the chart script reads."""
    return list(json.loads(html.split(f'<script id="{script_id}" type="application/json">')[1].split("</script>")[0]))


def customer_days(customer: Customer, first: date, count: int) -> list[CustomerDay]:
    """`count` consecutive stored days from `first`: cash falls by a fee a day, the market value wanders."""
    rows = []
    for number in range(count):
        pnl = Decimal(((number * 37) % 200) - 100)
        rows.append(
            CustomerDay(
                customer=customer, date=first + timedelta(days=number), provisional=False,
                nr_trades=number % 4, buy_notional=Decimal("1000.00"), sell_notional=Decimal("0.00"),
                commission_paid=Decimal("1.25"), total_nr_trades=number, total_commission_paid=Decimal("1.25") * number,
                total_amount_invested=Decimal("1000.00") * number, remaining_fund=F - Decimal("1.25") * number,
                market_value=Decimal("100000.00") + pnl * number, trade_pnl=pnl / 4, position_pnl=pnl * 3 / 4,
                total_pnl=pnl, updated=timezone.now(),
            )
        )  # fmt: skip
    return CustomerDay.objects.bulk_create(rows)


def ticker_day(ticker: Ticker, day: date, *, lit: int, dark: int, vwap: str) -> TickerDay:
    price = Decimal(vwap)
    return TickerDay.objects.create(
        ticker=ticker, date=day, provisional=False, nr_trades=3, volume=lit + dark,
        notional=(price * (lit + dark)).quantize(Decimal("0.01")), vwap=price, open=price, high=price + 1,
        low=price - 1, last=price, buy_volume=lit, sell_volume=dark, lit_volume=lit, dark_volume=dark,
        fees=Decimal("2.50"), close=price, close_date=day, updated=timezone.now(),
    )  # fmt: skip


# --- who may open them --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "group"), [("trader", roles.TRADER), ("ops", roles.OPERATIONS)])
def test_trader_and_operations_open_every_report_screen(username: str, group: str) -> None:
    # given stored days for a customer and a ticker
    customers = make_customers()
    coin = make_ticker("COIN")
    customer_days(customers["000002"], date(2024, 3, 4), 5)
    ticker_day(coin, date(2024, 3, 8), lit=100, dark=50, vwap="250.00")
    client = logged_in(username, group)

    # when each screen is opened, then it renders, with Reports in the menu
    for path in ("/reports/", "/reports/customers/000002/", "/reports/tickers/COIN/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert '<a href="/reports/" class="active">Reports</a>' in response.content.decode()
    # and the other screens offer Reports in the menu too
    assert '<a href="/reports/" class="">Reports</a>' in client.get("/positions/").content.decode()


def test_staff_without_view_blotter_get_the_403_page_and_no_menu_entry() -> None:
    # given a staff user with no role
    make_customers()
    make_ticker("COIN")
    User.objects.create_user(username="clerk", password=PASSWORD, is_staff=True)
    client = Client()
    assert client.login(username="clerk", password=PASSWORD)

    # then every report screen and CSV is refused with the permission named
    for path in (
        "/reports/",
        "/reports/customers/000002/",
        "/reports/customers/000002/?format=csv&table=days",
        "/reports/tickers/COIN/",
    ):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "orders.view_blotter" in response.content.decode()
    # and anonymous users are sent to log in
    response = Client().get("/reports/customers/000002/")
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/reports/customers/000002/")


# --- the statement against the hand-computed example --------------------------------------------------------


@pytest.mark.usefixtures("example")
def test_statement_shows_the_examples_days_and_positions_and_exports_them() -> None:
    # given the two days of the example aggregated
    aggregation.days_aggregate([DAY1, DAY2])
    client = logged_in()

    # when the statement opens with no dates: the 90 days up to the latest stored day
    response = client.get("/reports/customers/000002/")

    # then the range ends at the latest day, and the charts get every day as decimal strings
    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="2024-03-08"' in html
    assert f'value="{(DAY2 - timedelta(days=89)).isoformat()}"' in html
    assert embedded_series(html, "statement-series") == [
        {"time": "2024-03-07", "cash": "4987773.50", "marketValue": "1262500.00", "totalValue": "6250273.50",
         "totalPnl": "50275.00"},
        {"time": "2024-03-08", "cash": "4982848.25", "marketValue": "1242150.00", "totalValue": "6224998.25",
         "totalPnl": "-25275.00"},
    ]  # fmt: skip
    assert html.count('<tr data-date="') == 2
    assert "?start=2023-12-10&amp;end=2024-03-08&amp;format=csv&amp;table=days" in html

    # and the days CSV holds the same rows, money as decimal strings
    days = csv_rows(
        client.get("/reports/customers/000002/?start=2024-03-01&end=2024-03-08&format=csv&table=days").content
    )
    assert days == [
        {"date": "2024-03-07", "nrTrades": "2", "fees": "1.50", "cash": "4987773.50", "marketValue": "1262500.00",
         "totalValue": "6250273.50", "tradePnl": "275.00", "positionPnl": "50000.00", "totalPnl": "50275.00",
         "provisional": "false"},
        {"date": "2024-03-08", "nrTrades": "1", "fees": "0.25", "cash": "4982848.25", "marketValue": "1242150.00",
         "totalValue": "6224998.25", "tradePnl": "-25.00", "positionPnl": "-25250.00", "totalPnl": "-25275.00",
         "provisional": "false"},
    ]  # fmt: skip

    # and the positions at the end date: 5,070 COIN at the 03-08 close
    response = client.get("/reports/customers/000002/?start=2024-03-01&end=2024-03-08&format=csv&table=positions")
    assert response["Content-Type"] == "text/csv"
    assert "statement-000002-positions-2024-03-01-2024-03-08.csv" in response["Content-Disposition"]
    assert csv_rows(response.content) == [
        {"date": "2024-03-08", "ticker": "COIN", "quantity": "5070", "averageCost": "249.9463", "close": "245.00",
         "closeDate": "2024-03-08", "marketValue": "1242150.00", "tradePnl": "-25.00", "positionPnl": "-25250.00",
         "totalPnl": "-25275.00", "provisional": "false"},
    ]  # fmt: skip
    assert 'data-ticker="COIN"' in html


@pytest.mark.usefixtures("example")
def test_an_end_date_without_rows_shows_the_positions_of_the_last_stored_day_before_it() -> None:
    aggregation.days_aggregate([DAY1, DAY2])

    # a Sunday after the example: nothing stored that day
    response = logged_in().get("/reports/customers/000002/?start=2024-03-07&end=2024-03-10")

    assert response.context["positions_date"] == DAY2
    assert [row["quantity"] for row in response.context["positions"]] == [5070]
    assert [row["date"] for row in response.context["days"]] == [DAY1, DAY2]


def test_the_statements_queries_do_not_grow_with_a_year_of_days(django_assert_num_queries: Any) -> None:
    # given a year of stored days and three positions at the last close
    customers = make_customers()
    customer = customers["000002"]
    first = date(2023, 3, 9)
    customer_days(customer, first, 365)
    last = first + timedelta(days=364)
    for symbol, quantity in (("AAPL", 100), ("COIN", 5000), ("MSFT", 0)):
        PositionSnapshot.objects.create(
            customer=customer, ticker=make_ticker(symbol), date=last, provisional=False, quantity=quantity,
            bought_quantity=quantity, bought_amount=Decimal(quantity * 200), average_cost=Decimal("200.0000"),
            close=Decimal("210.000000"), close_date=last, market_value=Decimal(quantity * 210),
            trade_pnl=Decimal("0.00"), position_pnl=Decimal(quantity * 10), total_pnl=Decimal(quantity * 10),
            updated=timezone.now(),
        )  # fmt: skip
    client = logged_in()

    # when the whole year is asked for, then a week: the same small number of queries
    # (session, user, permissions x2, customer with its latest day, days, positions, the menu's groups)
    with django_assert_num_queries(8):
        year = client.get(f"/reports/customers/000002/?start={first.isoformat()}&end={last.isoformat()}")
    with django_assert_num_queries(8):
        week = client.get(f"/reports/customers/000002/?start={(last - timedelta(days=6)).isoformat()}")
    with django_assert_num_queries(7):  # the CSV renders no menu
        export = client.get(f"/reports/customers/000002/?start={first.isoformat()}&format=csv&table=days")

    # then every day is drawn and listed, and the file holds the same rows
    assert (len(year.context["series"]), len(week.context["series"])) == (365, 7)
    rows = csv_rows(export.content)
    assert len(rows) == 365
    assert [row["date"] for row in rows] == [item["time"] for item in year.context["series"]]
    assert [row["totalValue"] for row in rows] == [item["totalValue"] for item in year.context["series"]]
    assert [row["ticker"] for row in year.context["positions"]] == ["AAPL", "COIN", "MSFT"]


# --- the ticker's days --------------------------------------------------------------------------------------


def test_ticker_days_chart_lit_and_dark_and_export_the_table() -> None:
    # given two stored days of COIN trades
    coin = make_ticker("COIN")
    ticker_day(coin, date(2024, 3, 7), lit=150, dark=0, vwap="249.1667")
    ticker_day(coin, date(2024, 3, 8), lit=20, dark=80, vwap="246.25")
    client = logged_in("ops", roles.OPERATIONS)

    # when the ticker's page opens (any case of the symbol)
    response = client.get("/reports/tickers/coin/")

    # then the chart series and the table hold both days
    html = response.content.decode()
    assert embedded_series(html, "ticker-series") == [
        {"time": "2024-03-07", "volume": "150", "vwap": "249.1667", "litVolume": "150", "darkVolume": "0"},
        {"time": "2024-03-08", "volume": "100", "vwap": "246.25", "litVolume": "20", "darkVolume": "80"},
    ]
    assert html.count('<tr data-date="') == 2
    # and the CSV the same rows
    rows = csv_rows(client.get("/reports/tickers/COIN/?start=2024-03-01&end=2024-03-31&format=csv").content)
    assert [(row["date"], row["volume"], row["vwap"], row["litVolume"], row["darkVolume"]) for row in rows] == [
        ("2024-03-07", "150", "249.1667", "150", "0"),
        ("2024-03-08", "100", "246.25", "20", "80"),
    ]
    assert rows[1]["notional"] == "24625.00"
    assert rows[1]["closeDate"] == "2024-03-08"
    # and an unknown ticker or table is the 404 page
    assert client.get("/reports/tickers/NOPE/").status_code == 404
    assert client.get("/reports/tickers/COIN/?format=csv&table=positions").status_code == 404


# --- the index, empty states and bad dates ------------------------------------------------------------------


def test_index_lists_customers_and_tickers_with_the_latest_day() -> None:
    customers = make_customers()
    coin = make_ticker("COIN")
    make_ticker("AAPL")  # never traded: not listed
    customer_days(customers["000002"], date(2024, 3, 4), 5)
    ticker_day(coin, date(2024, 3, 8), lit=100, dark=50, vwap="250.00")

    html = logged_in().get("/reports/").content.decode()

    assert '<b id="latest-day">2024-03-08</b>' in html
    assert '<a href="/reports/customers/000002/"><b>000002</b></a>' in html
    assert '<a href="/reports/tickers/COIN/"><b>COIN</b></a>' in html
    assert "/reports/tickers/AAPL/" not in html


def test_empty_states_say_what_to_run() -> None:
    make_customers()
    make_ticker("COIN")
    client = logged_in()

    for path in ("/reports/", "/reports/customers/000002/", "/reports/tickers/COIN/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "manage.py rebuild_reports" in response.content.decode(), path
    # the CSV of nothing is its header alone
    export = client.get("/reports/customers/000002/?format=csv&table=days")
    assert (
        export.content.decode().strip()
        == "date,nrTrades,fees,cash,marketValue,totalValue,tradePnl,positionPnl,totalPnl,provisional"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2024-13-01", "Enter a date as YYYY-MM-DD."),
        ("end=yesterday", "Enter a date as YYYY-MM-DD."),
        ("start=2024-03-08&end=2024-03-01", "Must be on or after the start date."),
        ("end=0001-01-05", "Enter a date from 1970-01-01 on."),
    ],
)
def test_bad_dates_are_a_form_error_never_a_server_error(query: str, message: str) -> None:
    customers = make_customers()
    customer_days(customers["000002"], date(2024, 3, 4), 5)
    make_ticker("COIN")
    client = logged_in()

    for path in ("/reports/customers/000002/", "/reports/tickers/COIN/"):
        # the page shows the message next to the dates
        response = client.get(f"{path}?{query}")
        assert response.status_code == 200
        assert message in response.content.decode()
        assert response.context["days"] == []
        # and a CSV link with those dates goes back to the page, which says what is wrong
        export = client.get(f"{path}?{query}&format=csv&table=days")
        assert (export.status_code, export["Location"]) == (302, f"{path}?{query}")


def test_the_positions_screen_links_the_customer_to_the_statement() -> None:
    make_customers()
    html = logged_in().get("/positions/?customer=000002").content.decode()
    assert '<a id="statement-link" href="/reports/customers/000002/">' in html


@pytest.mark.usefixtures("example")
def test_a_range_up_to_today_computes_today_and_a_past_range_does_not() -> None:
    # given the example's days stored, and nothing since
    aggregation.days_aggregate([DAY1, DAY2])
    client = logged_in()
    today = aggregation.today()

    # when the statement is asked for a past range, then nothing is computed
    html = client.get("/reports/customers/000002/?start=2024-03-01&end=2024-03-08").content.decode()
    assert not CustomerDay.objects.filter(date__gt=DAY2).exists()
    # and the page offers the range up to today
    assert f'id="range-today" href="?start=2024-03-01&amp;end={today.isoformat()}"' in html

    # when the range reaches today
    html = client.get(f"/reports/customers/000002/?start=2024-03-01&end={today.isoformat()}").content.decode()

    # then today is computed from the trades so far, provisional, carrying the example's cash forward
    row = CustomerDay.objects.get(customer__customer_id="000002", date=today)
    assert (row.provisional, row.remaining_fund, row.total_nr_trades) == (True, F - Decimal("17151.75"), 3)
    assert f'<tr data-date="{today.isoformat()}" class="provisional">' in html
    # and so does the ticker's page (COIN did not trade today: no row, nothing else stored)
    assert client.get(f"/reports/tickers/COIN/?end={today.isoformat()}").status_code == 200
    assert CustomerDay.objects.filter(date=today).count() == Customer.objects.count()
