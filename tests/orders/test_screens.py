"""Staff screens without a browser: every screen checks its permission, bad input is answered next to
the field (never an error page), and bulk booking validates and books through the order service."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from orders import bulk, roles
from orders.models import BulkBatch, BulkStatus, Order, Trade
from tests.conftest import Market, drive, place
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db

TRADER_SCREENS = [
    "/orders/ticket/",
    "/orders/blotter/",
    "/orders/bulk/",
    "/positions/",
    "/trades/",
    "/trades/export.csv",
    "/accounts/?customer=000002",
    "/accounts/statements/?customer=000002",
]
OPERATIONS_SCREENS = ["/operations/halts/", "/operations/breaks/"]


def client_for(username: str, group: str) -> Client:
    staff_user(username, group)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


@pytest.mark.parametrize("path", TRADER_SCREENS + OPERATIONS_SCREENS)
def test_anonymous_users_are_sent_to_the_login_page(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_roles_open_exactly_their_screens(market: Market) -> None:
    trader = client_for("trader", roles.TRADER)
    operations = client_for("ops", roles.OPERATIONS)
    for path in TRADER_SCREENS:
        assert trader.get(path).status_code == 200, path
    for path in OPERATIONS_SCREENS:
        response = trader.get(path)
        assert response.status_code == 403, path
        assert b"You cannot open this screen" in response.content
        assert operations.get(path).status_code == 200, path
    # Operations see the desk's records but do not enter orders
    assert operations.get("/orders/blotter/").status_code == 200
    assert operations.get("/orders/ticket/").status_code == 403


def test_the_roles_migration_made_the_groups() -> None:
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {roles.TRADER, roles.OPERATIONS, roles.ADMIN}
    admin = Group.objects.get(name=roles.ADMIN)
    # the seven of the roles migration, the dead letters' (orders/migrations/0016) and the cash
    # movements' (orders/migrations/0020)
    assert admin.permissions.count() == 9
    operations = Group.objects.get(name=roles.OPERATIONS)
    assert operations.permissions.filter(codename="handle_dead_letters").exists()
    assert operations.permissions.filter(codename="post_cash_movements").exists()
    assert not Group.objects.get(name=roles.TRADER).permissions.filter(codename="post_cash_movements").exists()


def test_the_ticket_places_through_the_order_service_and_answers_bad_input_next_to_the_field(market: Market) -> None:
    trader = client_for("trader", roles.TRADER)
    # bad input: every message next to its field, nothing placed, status 200
    response = trader.post(
        "/orders/ticket/",
        {"customer": "000002", "ticker": "COIN", "direction": "Buy", "order_type": "Market", "quantity": "0",
         "time_in_force": "GTC"},
    )  # fmt: skip
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {
        "quantity": ["Must be a positive whole number of shares."],
        "time_in_force": ["A Market order cannot be GTC; use Day, IOC or FOK."],
    }
    assert not Order.objects.exists()
    # good input: placed, entered by the trader, confirmed with its id
    response = trader.post(
        "/orders/ticket/",
        {"customer": "000002", "ticker": "coin", "direction": "Sell", "order_type": "Limit", "quantity": "1,000",
         "price": "250.10", "time_in_force": "Day"},
        HTTP_HX_REQUEST="true",
    )  # fmt: skip
    order = Order.objects.get()
    assert (order.direction, order.quantity, str(order.price)) == ("Sell", 1000, "250.1000")
    assert order.entered_by is not None
    assert order.entered_by.username == "trader"
    assert str(order.order_id) in response.content.decode()


def test_a_clientorderid_reused_for_another_order_is_a_field_error(market: Market) -> None:
    trader = client_for("trader", roles.TRADER)
    body = {"customer": "000002", "ticker": "COIN", "direction": "Buy", "order_type": "Limit", "quantity": "10",
            "price": "250.00", "time_in_force": "Day", "client_order_id": "desk-1"}  # fmt: skip
    trader.post("/orders/ticket/", body)
    response = trader.post("/orders/ticket/", {**body, "quantity": "11"})
    assert "client_order_id" in response.context["form"].errors
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"customerId,ticker\n000002,COIN\n", "Missing column(s) direction, type, quantity."),
        (b"customerId,direction,ticker,type,quantity,colour\n", "Unknown column(s) colour."),
        (b"customerId,direction,ticker,type,quantity\n", "The file has a header but no orders."),
        (b"\xff\xfe\x00", "The file is not UTF-8 text; save it as CSV (UTF-8)."),
        (b"customerId,direction,ticker,type,quantity\n000002,Buy,CO\x00IN,Limit,1\n", "contains NUL characters"),
    ],
)
def test_an_unreadable_file_is_an_error_next_to_the_upload(market: Market, content: bytes, message: str) -> None:
    trader = client_for("trader", roles.TRADER)
    response = trader.post("/orders/bulk/", {"file": SimpleUploadedFile("orders.csv", content), "upload": "1"})
    assert response.status_code == 200
    assert any(message in error for error in response.context["upload_form"].errors["file"])
    assert not BulkBatch.objects.exists()


def test_bulk_booking_flags_bad_rows_and_books_the_others_once(market: Market) -> None:
    trader = client_for("trader", roles.TRADER)
    content = (
        b"customerId,direction,ticker,type,quantity,price,timeInForce\n"
        b"000002,Buy,COIN,Limit,100,255.00,Day\n"
        b"000099,Buy,COIN,Limit,100,255.00,Day\n"
        b"000003,Buy,ZZZZ,Limit,100,255.00,Day\n"
        b"000004,Sell,COIN,Market,10,12.00,IOC\n"
        b"000005,Sell,COIN,Limit,10,257.00,GTC\n"
        b"000098,Hold,YYYY,Limit,10,257.00,Day\n"
    )
    response = trader.post("/orders/bulk/", {"file": SimpleUploadedFile("orders.csv", content), "upload": "1"})
    batch = BulkBatch.objects.get()
    assert response["Location"] == reverse("orders:bulk-batch", args=[batch.batch_id])
    assert batch.status == BulkStatus.PREVIEW
    assert [row["errors"] for row in batch.rows] == [
        {},
        {"customerId": ["Unknown customer '000099'."]},
        {"ticker": ["Unknown ticker 'ZZZZ'."]},
        {"price": ["A Market order has no price; leave it out or use a Limit order."]},
        {},
        {  # every problem of a row at once, not only the first kind found
            "direction": ["Unknown direction 'Hold'; use Buy or Sell."],
            "customerId": ["Unknown customer '000098'."],
            "ticker": ["Unknown ticker 'YYYY'."],
        },
    ]
    page = trader.get(response["Location"])
    assert b"Book 2 valid rows" in page.content

    # booking twice (a double click) places each valid row once
    trader.post(reverse("orders:bulk-book", args=[batch.batch_id]))
    trader.post(reverse("orders:bulk-book", args=[batch.batch_id]))
    batch.refresh_from_db()
    assert (batch.status, batch.booked) == (BulkStatus.BOOKED, 2)
    assert sorted(Order.objects.values_list("customer__customer_id", flat=True)) == ["000002", "000005"]
    assert all(row.get("orderId") for row in batch.rows if not row["errors"])


def test_a_file_without_a_valid_row_offers_nothing_to_book(market: Market) -> None:
    trader = client_for("trader", roles.TRADER)
    content = b"customerId,direction,ticker,type,quantity,price,timeInForce\n000002,Buy,COIN,Limit,0,255.00,Day\n"
    response = trader.post("/orders/bulk/", {"file": SimpleUploadedFile("bad.csv", content), "upload": "1"})
    page = trader.get(response["Location"])
    assert b"Nothing to book" in page.content
    assert b"No row is valid" in page.content
    assert b'id="book-button"' not in page.content


def test_generated_orders_are_valid_and_reproducible(market: Market) -> None:
    rows = bulk.bulk_rows_generate(count=40, seed=7)
    assert rows == bulk.bulk_rows_generate(count=40, seed=7)
    trader = staff_user("trader", roles.TRADER)
    batch = bulk.bulk_batch_create(rows=rows, source="generated", actor=trader)
    assert (batch.status, batch.valid) == (BulkStatus.PREVIEW, 40)


def test_generate_asks_for_a_sensible_number(market: Market) -> None:
    trader = client_for("trader", roles.TRADER)
    for count, message in [("lots", "Enter a whole number"), ("0", "Choose between 1 and 5,000")]:
        response = trader.post("/orders/bulk/", {"count": count, "generate": "1"})
        assert response.status_code == 200
        assert message in response.context["generate_form"].errors["count"][0]


def test_trades_search_rejects_a_bad_order_id_next_to_the_field(market: Market) -> None:
    trader = client_for("trader", roles.TRADER)
    response = trader.get("/trades/", {"order_id": "not-a-uuid", "date_from": "2026-02-30"})
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"order_id", "date_from"}


def test_kill_switch_screen_goes_through_the_service(market: Market) -> None:
    operations = client_for("ops", roles.OPERATIONS)
    response = operations.post("/operations/halts/", {"scope": "Ticker", "target": "NOPE", "reason": "x"})
    assert response.context["form"].errors == {"target": ["Unknown ticker 'NOPE'."]}
    response = operations.post("/operations/halts/", {"scope": "Nope", "target": "COIN", "reason": "x"})
    assert response.context["form"].errors == {"scope": ["Unknown scope 'Nope'; use All, Pool, Ticker or Customer."]}
    operations.post("/operations/halts/", {"scope": "Ticker", "target": "COIN", "reason": "news pending"})
    from orders.kill_switch import halts

    halt = halts().get()
    assert (halt.active, halt.reason, halt.changed_by) == (True, "news pending", "ops")
    operations.post("/operations/halts/", {"scope": "Ticker", "target": "COIN", "release": "1"})
    assert halts().get().active is False


def test_a_batch_on_the_worker_shows_its_progress_and_polls(market: Market) -> None:
    # given a batch the worker is booking, 50 of 150 rows done
    trader_user = staff_user("trader", roles.TRADER)
    rows = bulk.bulk_rows_generate(count=150, seed=3)
    batch = BulkBatch.objects.create(
        source="big.csv",
        rows=[{"line": n, "fields": fields, "errors": {}} for n, fields in enumerate(rows, start=1)],
        total=150,
        valid=150,
        processed=50,
        status=BulkStatus.BOOKING,
        created_by=trader_user,
    )
    trader = client_for("trader", roles.TRADER)

    # when the screen polls it
    response = trader.get(reverse("orders:bulk-batch", args=[batch.batch_id]), HTTP_HX_REQUEST="true")

    # then it shows the progress and keeps polling
    content = response.content.decode()
    assert 'aria-valuenow="33"' in content
    assert "Booking 50 of 150" in content
    assert 'hx-trigger="every 1s"' in content


def test_operations_run_reconciliation_and_work_a_break_on_the_screens(market: Market) -> None:
    from reporting.models import Break, BreakStatus

    # given an order whose filled quantity was edited by hand (no trades back it)
    order = place("000002", price="250.00")
    Order.objects.filter(pk=order.pk).update(filled_quantity=3)
    operations = client_for("ops", roles.OPERATIONS)

    # when Operations run reconciliation from the breaks screen
    response = operations.post("/operations/breaks/run/", follow=True)

    # then the break is listed
    item = Break.objects.get()
    assert f'href="/operations/breaks/{item.pk}/"' in response.content.decode()
    page = f"/operations/breaks/{item.pk}/"
    # an empty resolution is refused next to its field
    response = operations.post(page, {"action": "resolve", "resolution": "  "})
    assert response.context["resolve_form"].errors == {"resolution": ["Say how the break was resolved."]}
    # assign, comment and resolve go through the break workflow, with who did it
    operations.post(page, {"action": "assign"})
    operations.post(page, {"action": "comment", "text": "Order row edited by hand."})
    operations.post(page, {"action": "resolve", "resolution": "Restored from the trades."})
    item.refresh_from_db()
    assert (item.status, item.assignee.username if item.assignee else None) == (BreakStatus.RESOLVED, "ops")
    texts = list(item.comments.values_list("text", flat=True))
    assert texts == ["Assigned to ops.", "Order row edited by hand.", "Resolved: Restored from the trades."]
    # and a trader may not open it
    assert client_for("trader", roles.TRADER).get(page).status_code == 403


def test_trades_are_paginated_and_the_csv_has_every_match(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    import csv
    import io

    from reporting import views as report_views

    # given an order filled in more than eight trades, and pages of four
    drive(place("000002", quantity=4000, price="260.00"))
    count = Trade.objects.count()
    assert count > 8
    monkeypatch.setattr(report_views, "TRADES_PER_PAGE", 4)
    trader = client_for("trader", roles.TRADER)

    # when the trader pages through them
    first = trader.get("/trades/", {"customer": "000002"})
    second = trader.get("/trades/?customer=000002&page=2")

    # then each page has four, different ones, and the pager says how many pages
    first_ids = [trade.pk for trade in first.context["page"]]
    second_ids = [trade.pk for trade in second.context["page"]]
    assert len(first_ids) == len(second_ids) == 4
    assert not set(first_ids) & set(second_ids)
    assert f"Page 1 of {-(-count // 4)}" in first.content.decode()
    # and the CSV export of the same search has every trade in the API's shape
    export = trader.get("/trades/export.csv", {"customer": "000002"})
    rows = list(csv.DictReader(io.StringIO(export.getvalue().decode())))
    assert len(rows) == count
    assert {row["customerId"] for row in rows} == {"000002"}
    assert sum(int(row["quantity"]) for row in rows) == 4000
