"""The Accounts screen in Chromium: Operations deposit cash for a customer and journal shares to
another, see a refusal when a withdrawal would overdraw, and the day's activities list the movements
with the figures the API gives; screenshot."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from broker.models import Customer
from settlement.models import CASH_ASSET
from settlement.selectors import cash_balance
from settlement.services import available
from tests.browser.conftest import log_in, menu, screenshot
from tests.stack import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack, pytest.mark.usefixtures("desk")]


def test_operations_post_a_deposit_and_a_journal_and_see_them_as_activities(page: Page, stack: Stack) -> None:
    customer = Customer.objects.get(customer_id="000002")
    before = cash_balance(customer_id=customer.pk)

    # when Operations open the customer's account and deposit cash
    log_in(page, "ops")
    menu(page, "Accounts").click()
    page.locator("select[name=customer]").select_option("000002")
    page.locator("#cash-form input[name=amount]").fill("1250.00")
    page.locator("#cash-form input[name=reason]").fill("wire from the client's bank")
    page.locator("#cash-button").click()

    # then it is posted and listed as a deposit of the day
    expect(page.locator(".messages")).to_contain_text("Posted: Cash deposit of 1250.00 USD.")
    expect(page.locator("#activities .activity-csd").last).to_contain_text("1250.00")
    assert cash_balance(customer_id=customer.pk) == before + Decimal("1250.00")

    # when they withdraw more than is available, then it is refused, naming the figures
    too_much = available(customer_id=customer.pk, asset=CASH_ASSET) + Decimal("0.01")
    page.locator("#cash-form select[name=type]").select_option("CSW")
    page.locator("#cash-form input[name=amount]").fill(str(too_much))
    page.locator("#cash-form input[name=reason]").fill("client asked for everything")
    page.locator("#cash-button").click()
    expect(page.locator(".messages")).to_contain_text(
        "Not posted. amount: Refused: it would leave the account negative"
    )

    # when they journal shares to another customer, then both movements are activities
    page.locator("#journal-form select[name=type]").select_option("JNLS")
    page.locator("#journal-form select[name=toCustomerId]").select_option("000003")
    page.locator("#journal-form input[name=symbol]").fill("COIN")
    page.locator("#journal-form input[name=quantity]").fill("10")
    page.locator("#journal-form input[name=reason]").fill("gift to a family member")
    page.locator("#journal-button").click()
    expect(page.locator(".messages")).to_contain_text("Posted: Journal between two customers of 10 COIN.")
    expect(page.locator("#activities .activity-jnls").last).to_contain_text("-10")
    expect(page.locator("#activities .activity-jnls").last).to_contain_text("with 000003")
    screenshot(page, "accounts")
