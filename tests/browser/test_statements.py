"""The Statements screen in Chromium: a trader picks a customer and the month, reads the summary, the
month-end positions and the month's activities as the API states them, and opens the PDF; screenshot."""

from __future__ import annotations

import io
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from broker import services as broker_services
from orders.activities import MARKET_TZ
from orders.models import Trade
from tests.browser.conftest import log_in, menu, screenshot
from tests.browser.test_screens import api_order
from tests.stack import Stack, wait_for, wait_until_quiet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack, pytest.mark.usefixtures("desk")]


def test_a_trader_reads_a_customers_month_and_its_pdf(page: Page, stack: Stack) -> None:
    # given two fills of customer 000002 this month
    for quantity in (100, 40):
        api_order(stack, "000002", quantity=quantity, price="260.00", timeInForce="IOC")
    wait_for(lambda: Trade.objects.filter(customer__customer_id="000002").count() >= 2 or None, "the fills")
    wait_until_quiet()
    month = f"{timezone.localtime(timezone.now(), MARKET_TZ):%Y-%m}"
    token = broker_services.api_token_for_customer(customer_id="000002").key
    api = httpx.get(
        f"{stack.base_url}/api/customers/000002/statements",
        params={"month": month},
        headers={"Authorization": f"Token {token}"},
    ).json()

    # when a trader opens the customer's statement for this month
    log_in(page, "trader")
    menu(page, "Statements").click()
    page.locator("select[name=customer]").select_option("000002")
    page.locator("select[name=month]").select_option(month)

    # then the screen states the API's figures: provisional, cash, fees, positions, every fill
    expect(page.locator("#statement-summary")).to_contain_text(api["openingCash"])
    expect(page.locator("#statement-summary")).to_contain_text(api["fees"])
    expect(page.locator("#statement-positions")).to_contain_text("COIN")
    expect(page.locator("#statement-activities .activity-fill")).to_have_count(api["tradeCount"])
    assert api["tradeCount"] >= 2
    expect(page.locator("main")).to_contain_text("Provisional")
    screenshot(page, "statements")

    # and the PDF link serves the same statement as a PDF, with the browser's own session
    href = page.locator("#statement-pdf").get_attribute("href")
    assert href is not None
    pdf = page.request.get(href)
    assert pdf.ok
    assert pdf.headers["content-type"] == "application/pdf"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.body())).pages)
    assert f"Monthly statement {month}" in text
    assert api["openingCash"] in text
    assert Decimal(api["fees"]) > 0
