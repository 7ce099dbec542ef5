"""The report screens in a real browser on the real stack: a customer's statement and a ticker's days,
their charts drawn by the chart library from stored days, and a narrower range redrawn from the form.

The stored days are written here as the nightly aggregation would leave them (half a year of a customer
trading COIN around its 5,000 opening shares), so the charts have a shape worth looking at."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from broker.models import Customer, Ticker
from reporting.models import CustomerDay, PositionSnapshot, TickerDay
from tests.browser.conftest import log_in, menu, screenshot
from tests.conftest import make_ticker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack, pytest.mark.usefixtures("desk")]

LAST = date(2024, 3, 8)
CENT = Decimal("0.01")


def _sessions(last: date, count: int) -> list[date]:
    days: list[date] = []
    day = last
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def store_half_a_year(customer: Customer, ticker: Ticker, *, sessions: int = 125) -> list[date]:
    """Stored customer and ticker days for `sessions` weekdays up to LAST, and the positions at LAST."""
    rng = random.Random(12)  # the same picture on every run
    now = timezone.now()
    days = _sessions(LAST, sessions)
    close = previous_close = Decimal("180.00")
    quantity, cash = 5000, Decimal("5000000.00")
    bought_quantity, bought_amount = 5000, Decimal("900000.00")
    total_trades, total_fees, invested = 0, Decimal(0), Decimal(0)
    customer_rows, ticker_rows = [], []
    for day in days:
        previous_close = close
        close = (close * Decimal(str(1 + rng.gauss(0.004, 0.03)))).quantize(CENT)
        carried = quantity
        trade_pnl, fees, trades = Decimal(0), Decimal(0), 0
        buy_notional = sell_notional = Decimal(0)
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            signed = rng.choice([1, -1]) * rng.randrange(50, 600, 10)
            price = (previous_close + (close - previous_close) * Decimal(str(rng.random()))).quantize(CENT)
            if quantity + signed < 0 or signed * price * Decimal("1.01") > cash:
                continue  # as the desk would: no short sale, no overspending
            notional = (abs(signed) * price).quantize(CENT)
            fee = (notional * Decimal("0.0001")).quantize(CENT)
            quantity += signed
            cash += -(notional + fee) if signed > 0 else notional - fee
            trade_pnl += (close - price) * signed
            fees += fee
            trades += 1
            if signed > 0:
                buy_notional += notional
                bought_quantity += signed
                bought_amount += notional
            else:
                sell_notional += notional
        total_trades, total_fees, invested = total_trades + trades, total_fees + fees, invested + buy_notional
        trade_pnl = trade_pnl.quantize(CENT)
        position_pnl = ((close - previous_close) * carried).quantize(CENT)
        customer_rows.append(
            CustomerDay(
                customer=customer, date=day, provisional=False, nr_trades=trades, buy_notional=buy_notional,
                sell_notional=sell_notional, commission_paid=fees, total_nr_trades=total_trades,
                total_commission_paid=total_fees, total_amount_invested=invested, remaining_fund=cash,
                market_value=(quantity * close).quantize(CENT), trade_pnl=trade_pnl, position_pnl=position_pnl,
                total_pnl=trade_pnl + position_pnl, updated=now,
            )
        )  # fmt: skip
        # The broker's whole day in the ticker: every customer's trades, on lit and dark venues.
        volume = rng.randrange(2_000, 30_000, 100)
        lit = int(volume * rng.uniform(0.45, 0.9))
        vwap = ((previous_close + close) / 2 * Decimal(str(1 + rng.gauss(0, 0.004)))).quantize(Decimal("0.0001"))
        ticker_rows.append(
            TickerDay(
                ticker=ticker, date=day, provisional=day == LAST, nr_trades=volume // 150, volume=volume,
                notional=(vwap * volume).quantize(CENT), vwap=vwap, open=previous_close,
                high=max(close, previous_close), low=min(close, previous_close), last=close,
                buy_volume=volume // 2, sell_volume=volume - volume // 2,
                lit_volume=lit, dark_volume=volume - lit, fees=(vwap * volume * Decimal("0.0001")).quantize(CENT),
                close=close, close_date=day, updated=now,
            )
        )  # fmt: skip
    assert (cash >= 0, quantity >= 0) == (True, True)
    CustomerDay.objects.bulk_create(customer_rows)
    TickerDay.objects.bulk_create(ticker_rows)
    PositionSnapshot.objects.create(
        customer=customer, ticker=ticker, date=LAST, provisional=False, quantity=quantity,
        bought_quantity=bought_quantity, bought_amount=bought_amount,
        average_cost=(bought_amount / bought_quantity).quantize(Decimal("0.0001")), close=close, close_date=LAST,
        market_value=(quantity * close).quantize(CENT), trade_pnl=customer_rows[-1].trade_pnl,
        position_pnl=customer_rows[-1].position_pnl, total_pnl=customer_rows[-1].total_pnl, updated=now,
    )  # fmt: skip
    aapl = make_ticker("AAPL", "170.73")
    PositionSnapshot.objects.create(
        customer=customer, ticker=aapl, date=LAST, provisional=False, quantity=1200, bought_quantity=1200,
        bought_amount=Decimal("198000.00"), average_cost=Decimal("165.0000"), close=Decimal("170.729996"),
        close_date=LAST, market_value=Decimal("204876.00"), trade_pnl=Decimal("0.00"),
        position_pnl=Decimal("-1567.20"), total_pnl=Decimal("-1567.20"), updated=now,
    )  # fmt: skip
    return days


def test_a_customer_statement_and_a_ticker_days_draw_their_charts(page: Page) -> None:
    # given half a year of stored days for 000002 trading COIN
    coin = Ticker.objects.get(symbol="COIN")
    days = store_half_a_year(Customer.objects.get(customer_id="000002"), coin)
    in_default_range = [day for day in days if day > LAST - timedelta(days=90)]

    # when a trader opens Reports, then the customer's statement
    log_in(page, "trader")
    menu(page, "Reports").click()
    expect(page.locator("#latest-day")).to_have_text("2024-03-08")
    page.locator("tr[data-customer='000002']").get_by_role("link", name="000002").click()

    # then both charts drew the 90 days up to the latest stored day, and the tables list them
    expect(page.get_by_role("heading", level=1)).to_contain_text("Statement 000002")
    for chart_id in ("#statement-values-chart", "#statement-pnl-chart"):
        chart = page.locator(chart_id)
        expect(chart).to_have_attribute("data-ready", str(len(in_default_range)))
        expect(chart.locator("canvas").first).to_be_visible()
    expect(page.locator("table.report-days tbody tr")).to_have_count(len(in_default_range))
    expect(page.locator("table.report-positions tbody tr")).to_have_count(2)
    page.set_viewport_size({"width": 1440, "height": 1500})
    screenshot(page, "report-customer-statement", full_page=False)

    # when a narrower range is asked for, then the charts redraw with its days only
    page.get_by_label("Start").fill("2024-02-01")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#statement-values-chart")).to_have_attribute(
        "data-ready", str(len([day for day in days if day >= date(2024, 2, 1)]))
    )

    # when the trader follows COIN to its days
    page.locator("table.report-positions").get_by_role("link", name="COIN").click()

    # then volume with VWAP, and the lit/dark split, are drawn for the 90 days
    expect(page.get_by_role("heading", level=1)).to_contain_text("COIN days")
    for chart_id in ("#ticker-volume-chart", "#ticker-venues-chart"):
        chart = page.locator(chart_id)
        expect(chart).to_have_attribute("data-ready", str(len(in_default_range)))
        expect(chart.locator("canvas").first).to_be_visible()
    expect(page.locator("table.report-ticker-days tbody tr.provisional")).to_have_count(1)
    screenshot(page, "report-ticker-days", full_page=False)
