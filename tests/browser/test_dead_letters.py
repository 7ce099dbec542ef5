"""The Dead letters screens in Chromium: Operations see the badge, open a letter about a resting order,
and cancel the order with a reason, which closes the letter with its history; screenshots."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from broker import deadletters
from broker.models import DeadLetter, DeadLetterStatus
from orders.models import Order, OrderStatus
from tests.browser.conftest import log_in, menu, screenshot
from tests.browser.test_screens import api_order
from tests.stack import Stack, wait_until_quiet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack, pytest.mark.usefixtures("desk")]


def test_operations_cancel_the_order_of_a_dead_letter(page: Page, stack: Stack) -> None:
    # given a resting order, and a dead letter saying a task about it failed for good
    placed = api_order(stack, "000004", quantity=100, price="200.00")
    wait_until_quiet()
    order = Order.objects.get(order_id=str(placed["orderId"]))
    letter = deadletters.dead_letter_record(
        task_name="orders.route_order", task_id="failed-delivery", args=[order.pk], kwargs={},
        error="InternalError: the venue gateway refused the order", traceback="Traceback (most recent call last): ...",
        attempts=6, queue="orders", subject_kind="order",
    )  # fmt: skip

    # when Operations log in, the menu counts it
    log_in(page, "ops")
    expect(page.locator("#dead-letter-badge")).to_have_text("1")
    menu(page, "Dead letters 1").click()
    expect(page.locator(f'tr[data-letter="{letter.pk}"]')).to_contain_text("InternalError: the venue gateway")
    screenshot(page, "dead-letters")

    # and they open it: what failed, the order, and what can be done
    page.locator(f'tr[data-letter="{letter.pk}"]').get_by_role("link", name=str(letter.pk), exact=True).click()
    expect(page.locator("#letter-error")).to_have_text("InternalError: the venue gateway refused the order")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    # a cancel without a reason is refused next to the field
    page.locator("#cancel-order-button").click()
    expect(page.locator(".field-reason .error")).to_have_text("Give the reason for the cancel.")
    page.get_by_label("Reason").fill("gateway down all day; client informed")
    page.locator("#cancel-order-button").click()

    # then the order is cancelled, the letter handled, and its history says who did what and why
    expect(page.locator("#letter-status")).to_have_text("Handled")
    expect(page.locator("#letter-history tbody tr")).to_have_count(3)
    expect(page.locator("#letter-history")).to_contain_text("gateway down all day; client informed")
    expect(page.locator("#dead-letter-badge")).to_have_count(0)
    screenshot(page, "dead-letter")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.HANDLED
