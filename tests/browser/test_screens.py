"""The staff screens in a real browser (Chromium via Playwright) on the real stack: log in, the order
ticket, the live blotter, cancel, bulk booking, positions, trades, and what a Trader may not open."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from broker import services as broker_services
from orders.models import BulkBatch, Order, OrderStatus
from tests.browser.conftest import log_in, menu, screenshot
from tests.stack import Stack, wait_until_quiet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack, pytest.mark.usefixtures("desk")]


def api_order(stack: Stack, customer_id: str, **fields: object) -> dict[str, object]:
    """Place an order as that customer's API client would (another client than the browser)."""
    token = broker_services.api_token_for_customer(customer_id=customer_id).key
    body = {"customerId": customer_id, "direction": "Buy", "ticker": "COIN", "type": "Limit", "quantity": 100}
    body.update(fields)
    response = httpx.post(f"{stack.base_url}/api/orders", json=body, headers={"Authorization": f"Token {token}"})
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


def test_static_files_are_served_by_whitenoise_under_the_asgi_server(stack: Stack) -> None:
    for path, kind in [("/static/css/app.css", "text/css"), ("/static/django_htmx/htmx-2.min.js", "javascript")]:
        response = httpx.get(f"{stack.base_url}{path}")
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"]


def test_log_in_and_enter_an_order_on_the_ticket_then_see_it_on_the_blotter(page: Page) -> None:
    # given the login page
    page.goto("/orders/ticket/")
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    screenshot(page, "login")
    # when a trader logs in and enters a marketable buy on the ticket, by keyboard
    log_in(page, "trader")
    menu(page, "Order ticket").click()
    page.get_by_label("Customer").select_option("000002")
    page.get_by_label("Ticker").fill("COIN")
    page.get_by_label("Ticker").press("Tab")
    expect(page.locator("#quote")).to_contain_text("Last 256.62")
    page.get_by_label("Quantity").fill("300")
    page.get_by_label("Limit price").fill("260.00")
    page.get_by_label("Limit price").press("Enter")

    # then the ticket confirms with the order id
    confirmation = page.locator("#ticket-confirmation")
    expect(confirmation).to_contain_text("Order accepted")
    expect(page.get_by_label("Quantity")).to_be_focused()  # ready for the next order
    order_id = page.locator("#placed-order-id").inner_text()
    order = Order.objects.get(order_id=order_id)
    assert (order.quantity, str(order.price), order.customer.customer_id) == (300, "260.0000", "000002")
    screenshot(page, "ticket")

    # and the blotter shows it filled, with its child orders and fills in the detail panel
    menu(page, "Blotter").click()
    row = page.locator(f"#order-{order_id}")
    expect(row).to_contain_text("Filled")
    expect(row.locator(".filled")).to_have_text("300")
    row.click()
    expect(page.locator("#order-detail")).to_contain_text(f"Order #{order.sequence}")
    expect(page.locator("#order-detail .fills tbody tr")).not_to_have_count(0)
    screenshot(page, "blotter")


def test_a_fill_from_another_client_appears_on_an_open_blotter_without_reload(page: Page, stack: Stack) -> None:
    # given a trader watching the blotter, connected to the fill stream
    log_in(page, "trader")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")

    # when a client places a marketable order through the API
    placed = api_order(stack, "000003", direction="Sell", quantity=1500, price="250.00")

    # then its fills stream into the feed and its row appears, filled, in the same document
    order_id = str(placed["orderId"])
    expect(page.locator(f"#fill-feed li[data-order-id='{order_id}']").first).to_contain_text("000003  Sell")
    row = page.locator(f"#order-{order_id}")
    expect(row).to_contain_text("Filled")
    expect(row.locator(".filled")).to_have_text("1,500")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "blotter-live")


def test_cancel_a_resting_order_from_the_blotter(page: Page, stack: Stack) -> None:
    # given a GTC buy far below the market, resting on a venue
    placed = api_order(stack, "000004", quantity=200, price="200.00", timeInForce="GTC")
    order_id = str(placed["orderId"])
    wait_until_quiet()
    assert Order.objects.get(order_id=order_id).status == OrderStatus.ROUTED

    # when a trader cancels it from the blotter (and confirms)
    log_in(page, "trader")
    row = page.locator(f"#order-{order_id}")
    expect(row).to_contain_text("Routed")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Cancel").click()

    # then the order is cancelled, on the detail panel and (live) on its row
    expect(page.locator("#order-detail")).to_contain_text("Cancelled")
    expect(row).to_contain_text("Cancelled")
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    assert Order.objects.get(order_id=order_id).status == OrderStatus.CANCELLED
    screenshot(page, "blotter-cancelled")


CSV_WITH_ONE_BAD_ROW = b"""customerId,direction,ticker,type,quantity,price,timeInForce
000002,Buy,COIN,Limit,100,255.00,Day
000003,Sell,COIN,Limit,50,258.5,GTC
000005,Buy,COIN,Limit,ten,255.00,Day
000006,Buy,COIN,Market,20,,IOC
"""


def test_upload_a_csv_with_one_bad_row_flags_it_and_books_the_others(page: Page) -> None:
    # given a trader on the bulk booking screen
    log_in(page, "trader")
    menu(page, "Bulk booking").click()
    screenshot(page, "bulk-upload")

    # when a CSV with one bad row (quantity "ten") is uploaded
    page.get_by_label("CSV file").set_input_files(
        {"name": "orders.csv", "mimeType": "text/csv", "buffer": CSV_WITH_ONE_BAD_ROW}
    )
    page.get_by_role("button", name="Upload and preview").click()

    # then the preview flags exactly that row, next to the bad cell, and offers to book the other three
    bad = page.locator("tr[data-line='3']")
    expect(bad).to_have_class(re.compile("row-invalid"))
    expect(bad.locator(".result")).to_contain_text("quantity: Must be a whole number of shares.")
    expect(bad.locator("td.cell-error")).to_have_text("ten")
    expect(page.locator("tr.row-invalid")).to_have_count(1)
    expect(page.locator("#valid-count")).to_have_text("3")
    screenshot(page, "bulk-preview")

    # when the valid rows are booked
    page.get_by_role("button", name="Book 3 valid rows").click()

    # then three orders exist, each row shows its order, and the bad row stays flagged and unbooked
    expect(page.locator("#batch-status")).to_have_text("Booked")
    expect(page.locator("#booked-count")).to_have_text("3")
    expect(page.locator("tr.row-booked")).to_have_count(3)
    expect(bad.locator(".result")).to_contain_text("quantity")
    batch = BulkBatch.objects.get()
    assert Order.objects.filter(client_order_id__startswith=f"bulk-{batch.batch_id.hex}-").count() == 3
    assert sorted(Order.objects.values_list("customer__customer_id", flat=True)) == ["000002", "000003", "000006"]
    screenshot(page, "bulk-booked")


def test_a_large_file_is_checked_and_booked_in_the_background_with_progress(page: Page) -> None:
    # given a file larger than what is handled inside the request
    lines = ["customerId,direction,ticker,type,quantity,price,timeInForce"]
    lines += [f"0000{1 + n % 9:02d},Buy,COIN,Limit,{10 + n},{240 + n % 10}.00,Day" for n in range(150)]
    log_in(page, "trader")
    page.goto("/orders/bulk/")
    page.get_by_label("CSV file").set_input_files(
        {"name": "big.csv", "mimeType": "text/csv", "buffer": "\n".join(lines).encode()}
    )

    # when it is uploaded, the worker validates it, and the valid rows are booked
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.locator("#batch-status")).to_have_text("Ready to book")
    expect(page.locator("#valid-count")).to_have_text("150")
    page.get_by_role("button", name="Book 150 valid rows").click()

    # then the screen follows the worker's progress until all are booked
    if page.locator(".progress").is_visible():  # the worker may already be done: the bar is not asserted
        screenshot(page, "bulk-progress", full_page=False)
    expect(page.locator("#batch-status")).to_have_text("Booked", timeout=60_000)
    expect(page.locator("#booked-count")).to_have_text("150")
    assert Order.objects.count() == 150
    screenshot(page, "bulk-background", full_page=False)


def test_positions_update_live_and_trades_export_as_csv(page: Page, stack: Stack) -> None:
    # given a trader watching a customer's positions: the opening 5,000 COIN
    log_in(page, "trader")
    menu(page, "Positions").click()
    page.get_by_label("Customer").select_option("000002")
    coin = page.locator("tr[data-ticker='COIN']")
    expect(coin).to_contain_text("5,000")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")

    # when the customer buys 400 more through the API
    placed = api_order(stack, "000002", quantity=400, price="260.00")

    # then the position shows 5,400 once the fills settle, without a reload
    expect(coin).to_contain_text("5,400")
    assert page.evaluate("window.__sameDocument") is True
    wait_until_quiet()
    screenshot(page, "positions")

    # and the trades screen lists the order's fills and exports them as CSV
    menu(page, "Trades").click()
    page.get_by_label("Order id").fill(str(placed["orderId"]))
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.trades tbody tr")).not_to_have_count(0)
    screenshot(page, "trades")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = Path(download.value.path()).read_text()
    header, *rows = text.strip().splitlines()
    assert header.startswith("customerId,direction,ticker,type,quantity,price,orderId")
    assert rows
    assert all(str(placed["orderId"]) in row for row in rows)


def test_a_trader_cannot_open_operations_screens_but_operations_can(page: Page, stack: Stack) -> None:
    # given a trader, and a filled order
    placed = api_order(stack, "000007", quantity=100, price="260.00")
    wait_until_quiet()
    log_in(page, "trader")
    # then the Operations screens answer with the 403 page, not a crash, and are not in the menu
    expect(menu(page, "Kill switch")).to_have_count(0)
    for path in ("/operations/halts/", "/operations/breaks/"):
        response = page.goto(path)
        assert response is not None
        assert response.status == 403
        expect(page.get_by_role("heading", name="You cannot open this screen")).to_be_visible()
    screenshot(page, "forbidden")

    # when an Operations user halts a ticker, forgetting the reason first
    page.context.clear_cookies()
    log_in(page, "ops")
    menu(page, "Kill switch").click()
    page.get_by_label("Scope").select_option("Ticker")
    page.get_by_label("Target").fill("COIN")
    page.get_by_role("button", name="Halt trading").click()
    expect(page.locator(".field-reason .error")).to_have_text("Say why trading is halted.")
    page.get_by_label("Reason").fill("news pending")
    page.get_by_role("button", name="Halt trading").click()

    # then the halt is listed and a release button is offered
    expect(page.locator("tr.row-halted")).to_contain_text("news pending")
    screenshot(page, "kill-switch")

    # and runs reconciliation from the breaks screen
    menu(page, "Breaks").click()
    page.get_by_role("button", name="Run reconciliation now").click()
    expect(page.locator(".sub")).to_contain_text("0 breaks: books reconcile")
    screenshot(page, "breaks")

    # and corrects a trade: a missing reason is refused next to the field, then the amend is recorded
    page.goto(f"/trades/?order_id={placed['orderId']}")
    page.get_by_role("link", name="Correct").first.click()
    page.get_by_label("Price").fill("256.00")
    page.get_by_role("button", name="Record correction").click()
    expect(page.locator(".field-reason .error")).to_have_text("Say why the trade is corrected.")
    page.get_by_label("Reason").fill("price agreed with the venue")
    page.get_by_role("button", name="Record correction").click()
    expect(page.get_by_role("status")).to_have_text("Correction recorded.")
    expect(page.locator("table.versions tbody tr")).to_have_count(1)
    screenshot(page, "trade-correction")


def test_the_quote_arriving_while_the_trader_types_leaves_the_focus_where_it_is(page: Page) -> None:
    # given a trader on the ticket who typed a symbol and moved on to the price
    log_in(page, "trader")
    page.goto("/orders/ticket/")
    page.get_by_label("Ticker").fill("NOPE")
    page.get_by_label("Limit price").focus()  # the ticker's change event asks for its quote

    # when the quote panel is swapped in
    expect(page.locator("#quote")).to_contain_text("No active ticker NOPE.")

    # then the price field keeps the focus (what is typed next goes there, not into the quantity)
    expect(page.get_by_label("Limit price")).to_be_focused()
    page.keyboard.type("10.25")
    expect(page.get_by_label("Limit price")).to_have_value("10.25")
    expect(page.get_by_label("Quantity")).to_have_value("")


def test_the_ticket_shows_each_error_next_to_its_field(page: Page) -> None:
    # given a trader on the ticket
    log_in(page, "trader")
    page.goto("/orders/ticket/")

    # when the order is submitted with no customer, an unknown ticker, a bad quantity and an off-tick price
    page.get_by_label("Ticker").fill("NOPE")
    page.get_by_label("Quantity").fill("12.5")
    page.get_by_label("Limit price").fill("10.001")
    page.get_by_role("button", name="Place order").click()

    # then each message is next to its field, and nothing was placed
    expect(page.locator(".field-customer .error")).to_have_text("This field is required.")
    expect(page.locator(".field-quantity .error")).to_have_text("Must be a whole number of shares.")
    expect(page.locator(".field-price .error")).to_contain_text("Must be on the 0.01 tick")
    expect(page.get_by_label("Customer")).to_be_focused()  # the first field in error
    screenshot(page, "ticket-errors")
    assert Order.objects.count() == 0

    # when the customer and numbers are fixed but the ticker is unknown
    page.get_by_label("Customer").select_option("000002")
    page.get_by_label("Quantity").fill("10")
    page.get_by_label("Limit price").fill("10.00")
    page.get_by_role("button", name="Place order").click()
    expect(page.locator(".field-ticker .error")).to_have_text("Unknown ticker 'NOPE'.")
    assert Order.objects.count() == 0
