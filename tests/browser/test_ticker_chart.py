"""The tickers screen and a ticker's chart in a real browser, on the shipped snapshot's real prices."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from broker.marketdata import services as marketdata_services
from broker.models import PriceBar
from tests.browser.conftest import log_in, menu, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack, pytest.mark.usefixtures("desk")]


def test_open_a_ticker_chart_of_daily_closes(page: Page) -> None:
    # given the snapshot's history for a few tickers
    marketdata_services.snapshot_load(symbols=["AAPL", "MSFT", "NVDA", "SPY"])
    # when a trader opens Tickers, then AAPL
    log_in(page, "trader")
    menu(page, "Tickers").click()
    row = page.locator("tr[data-ticker=AAPL]")
    expect(row).to_contain_text("Apple")
    expect(row).to_contain_text("170.73")  # the shipped last close, 2024-03-08
    screenshot(page, "tickers")
    row.get_by_role("link", name="AAPL").click()

    # then the quote summary and a chart of the year's daily bars, drawn by the chart library
    expect(page.get_by_role("heading", level=1)).to_contain_text("AAPL")
    chart = page.locator("#price-chart")
    bars_in_year = PriceBar.objects.filter(ticker__symbol="AAPL", date__gte="2023-03-08").count()
    expect(chart).to_have_attribute("data-ready", str(bars_in_year))
    expect(chart.locator("canvas").first).to_be_visible()
    screenshot(page, "ticker-chart")

    # and another range redraws with every stored session
    page.get_by_role("link", name="All", exact=True).click()
    expect(chart).to_have_attribute("data-ready", str(PriceBar.objects.filter(ticker__symbol="AAPL").count()))
