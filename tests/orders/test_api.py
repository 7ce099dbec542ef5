"""The order and trade REST API: validation, auth and visibility, idempotency, lists, cancel, schema."""

from __future__ import annotations

import json
import threading
import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from broker.models import Customer
from orders.models import Order, OrderStatus, Trade
from pools.models import PoolKind
from tests.conftest import Market, client_for, drive, make_ticker, place, staff_client

pytestmark = pytest.mark.django_db

MISSING = object()  # in a table of changes: leave the field out of the body

TRADE_KEYS = [
    "customerId",
    "direction",
    "ticker",
    "type",
    "quantity",
    "price",
    "orderId",
    "orderDate",
    "initialQuantity",
    "split",
    "tradeId",
    "exchange",
    "exchangeType",
    "tradeDate",
    "fee",
    "settlementDate",
]


def order_body(**changes: Any) -> dict[str, Any]:
    """The seed's order request for customer 000002, with `changes` applied (MISSING drops a field)."""
    body: dict[str, Any] = {
        "customerId": "000002",
        "direction": "Buy",
        "ticker": "COIN",
        "type": "Limit",
        "quantity": 8614,
        "price": "161.90",
    }
    for name, value in changes.items():
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def post_order(client: APIClient, body: Any) -> Any:
    return client.post("/api/orders", data=json.dumps(body), content_type="application/json")


def post_raw(client: APIClient, raw: str) -> Any:
    return client.post("/api/orders", data=raw, content_type="application/json")


def placed(customer_id: str = "000002", **fields: object) -> Order:
    order = place(customer_id, **fields)
    assert isinstance(order, Order)
    return order


# --- 1. validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"customerId": MISSING}, "customerId", id="customerId-missing"),
        pytest.param({"direction": MISSING}, "direction", id="direction-missing"),
        pytest.param({"ticker": MISSING}, "ticker", id="ticker-missing"),
        pytest.param({"type": MISSING}, "type", id="type-missing"),
        pytest.param({"quantity": MISSING}, "quantity", id="quantity-missing"),
        pytest.param({"customerId": None}, "customerId", id="customerId-null"),
        pytest.param({"customerId": 2}, "customerId", id="customerId-number"),
        pytest.param({"direction": "Hold"}, "direction", id="direction-unknown"),
        pytest.param({"direction": "buy"}, "direction", id="direction-wrong-case"),
        pytest.param({"type": "Stop"}, "type", id="type-unknown"),
        pytest.param({"timeInForce": "GTD"}, "timeInForce", id="timeInForce-unknown"),
        pytest.param({"ticker": "not a ticker"}, "ticker", id="ticker-malformed"),
        pytest.param({"quantity": 0}, "quantity", id="quantity-zero"),
        pytest.param({"quantity": -5}, "quantity", id="quantity-negative"),
        pytest.param({"quantity": 1.5}, "quantity", id="quantity-fraction"),
        pytest.param({"quantity": 100.0}, "quantity", id="quantity-float-whole"),
        pytest.param({"quantity": "100"}, "quantity", id="quantity-string"),
        pytest.param({"quantity": True}, "quantity", id="quantity-bool"),
        pytest.param({"price": MISSING}, "price", id="limit-without-price"),
        pytest.param({"price": None}, "price", id="limit-price-null"),
        pytest.param({"price": 0}, "price", id="price-zero"),
        pytest.param({"price": "0"}, "price", id="price-zero-string"),
        pytest.param({"price": -1}, "price", id="price-negative"),
        pytest.param({"price": "abc"}, "price", id="price-not-a-number"),
        pytest.param({"price": "NaN"}, "price", id="price-nan-string"),
        pytest.param({"price": "Infinity"}, "price", id="price-infinity-string"),
        pytest.param({"price": True}, "price", id="price-bool"),
        pytest.param({"price": ["161.90"]}, "price", id="price-list"),
        pytest.param({"price": "161.905"}, "price", id="price-off-cent-tick"),
        pytest.param({"price": "0.12345"}, "price", id="price-off-sub-dollar-tick"),
        pytest.param({"price": "1000000.01"}, "price", id="price-above-max"),
        pytest.param({"type": "Market"}, "price", id="market-with-price"),
        pytest.param({"type": "Market", "price": MISSING, "timeInForce": "GTC"}, "timeInForce", id="market-gtc"),
        pytest.param({"color": "blue"}, "color", id="unknown-extra-field"),
        pytest.param({"clientOrderId": "has space"}, "clientOrderId", id="clientOrderId-space"),
        pytest.param({"clientOrderId": "x" * 65}, "clientOrderId", id="clientOrderId-65-chars"),
        pytest.param({"clientOrderId": ""}, "clientOrderId", id="clientOrderId-empty"),
        pytest.param({"clientOrderId": 42}, "clientOrderId", id="clientOrderId-number"),
    ],
)
def test_malformed_order_is_400_naming_the_field_and_records_nothing(
    market: Market, changes: dict[str, Any], field: str
) -> None:
    # given a client of customer 000002 and the current number of orders
    client = client_for("000002")
    before = Order.objects.count()

    # when it posts the seed order with one thing wrong
    response = post_order(client, order_body(**changes))

    # then it is a 400 naming exactly that field, and nothing was recorded
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Order.objects.count() == before


def test_quantity_above_the_maximum_is_400(market: Market) -> None:
    # given a client
    client = client_for("000002")

    # when it asks for one share more than the maximum
    response = post_order(client, order_body(quantity=settings.MAX_ORDER_QUANTITY + 1))

    # then it is refused naming quantity
    assert response.status_code == 400
    assert "quantity" in response.json()
    assert Order.objects.count() == 0


def test_quantity_at_the_maximum_is_accepted(market: Market) -> None:
    # when a client asks for exactly the maximum quantity
    response = post_order(client_for("000002"), order_body(quantity=settings.MAX_ORDER_QUANTITY, price="1.00"))

    # then the request is well formed: it is recorded
    assert response.status_code == 201, response.content
    assert response.json()["quantity"] == settings.MAX_ORDER_QUANTITY
    assert Order.objects.count() == 1


def test_every_bad_field_is_named_at_once(market: Market) -> None:
    # when a body is wrong in several places
    response = post_order(client_for("000002"), order_body(direction="Up", quantity=0, price="abc"))

    # then every one of them is named in a single 400
    assert response.status_code == 400
    assert {"direction", "quantity", "price"} <= set(response.json())


def test_unknown_ticker_is_400_naming_ticker(market: Market) -> None:
    # when a client orders a well-formed symbol the broker does not know
    response = post_order(client_for("000002"), order_body(ticker="ZZZZ"))

    # then it is a 400 naming ticker
    assert response.status_code == 400
    assert "ticker" in response.json()
    assert Order.objects.count() == 0


def test_unknown_customer_with_a_staff_token_is_400_naming_customer(market: Market) -> None:
    # when staff place an order for a customer that does not exist
    response = post_order(staff_client(), order_body(customerId="999999"))

    # then it is a 400 naming customerId
    assert response.status_code == 400
    assert "customerId" in response.json()
    assert Order.objects.count() == 0


def test_a_malformed_field_does_not_hide_an_unknown_customer_or_ticker(market: Market) -> None:
    # when staff send a bad quantity for a customer and a ticker that do not exist
    response = post_order(staff_client(), order_body(customerId="999999", ticker="ZZZZ", quantity="ten"))

    # then one 400 names all three, so they are fixed in one go
    assert response.status_code == 400
    assert response.json() == {
        "customerId": ["Unknown customer '999999'."],
        "ticker": ["Unknown ticker 'ZZZZ'."],
        "quantity": ["Must be a whole number of shares."],
    }
    assert Order.objects.count() == 0


def test_a_malformed_order_for_another_customer_is_a_400_first(market: Market) -> None:
    # when a client sends a malformed body for someone else's customer
    response = post_order(client_for("000003"), order_body(customerId="000002", quantity=0))

    # then the malformed field is named (a well-formed one would be the 403 above)
    assert response.status_code == 400
    assert set(response.json()) == {"quantity"}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"customerId": "000002", "quantity": 10', id="truncated"),
        pytest.param(
            '{"customerId": "000002", "direction": "Buy", "ticker": "COIN", "type": "Limit", '
            '"quantity": 100, "price": NaN}',
            id="nan-constant",
        ),
        pytest.param(json.dumps([order_body()]), id="json-list"),
        pytest.param(json.dumps("an order"), id="json-string"),
        pytest.param("null", id="json-null"),
    ],
)
def test_body_that_is_not_a_json_object_is_400_naming_body(market: Market, raw: str) -> None:
    # when a client posts something that is not a JSON object
    response = post_raw(client_for("000002"), raw)

    # then it is a 400 naming the body, and nothing was recorded
    assert response.status_code == 400, response.content
    assert "body" in response.json()
    assert Order.objects.count() == 0


def test_non_json_content_type_is_refused_naming_body(market: Market) -> None:
    # when a client posts a form instead of JSON
    response = client_for("000002").post("/api/orders", data="customerId=000002", content_type="text/plain")

    # then it is refused as unsupported, naming the body
    assert response.status_code == 415
    assert "body" in response.json()
    assert Order.objects.count() == 0


def test_price_not_representable_as_a_float_is_judged_exactly(market: Market) -> None:
    # given a JSON number that a float would round onto the cent tick
    raw = json.dumps(order_body(price=MISSING))[:-1] + ', "price": 161.90000000000001}'

    # when it is posted
    response = post_raw(client_for("000002"), raw)

    # then the exact decimal is off the tick: 400 naming price
    assert response.status_code == 400, response.content
    assert "price" in response.json()
    assert Order.objects.count() == 0


def test_sub_dollar_price_on_the_finer_tick_is_accepted(market: Market) -> None:
    # given a ticker trading below $1
    make_ticker("PENNY", "0.5")

    # when a client orders it at a price on the 0.0001 tick
    response = post_order(client_for("000002"), order_body(ticker="PENNY", quantity=1000, price="0.1234"))

    # then it is accepted with that exact price
    assert response.status_code == 201, response.content
    assert response.json()["price"] == "0.1234"
    assert Order.objects.get().price == Decimal("0.1234")


# --- 2. happy path ------------------------------------------------------------------------------------


def test_valid_order_is_201_with_the_order(market: Market) -> None:
    # given a client of customer 000002
    client = client_for("000002")

    # when it posts the seed order
    response = post_order(client, order_body())

    # then it is recorded New with a gateway sequence, and echoed in the API shape
    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get()
    assert body["orderId"] == str(order.order_id)
    uuid.UUID(body["orderId"])
    assert body["status"] == "New"
    assert isinstance(body["sequence"], int)
    assert body["sequence"] == order.sequence
    assert body["price"] == "161.90"
    assert body["timeInForce"] == "Day"
    assert body["customerId"] == "000002"
    assert body["ticker"] == "COIN"
    assert body["quantity"] == 8614
    assert body["filledQuantity"] == 0
    assert body["averagePrice"] is None
    assert body["clientOrderId"] is None
    assert body["orderDate"].endswith("Z")
    assert order.price == Decimal("161.90")
    assert order.customer.customer_id == "000002"


@pytest.mark.parametrize("time_in_force", ["Day", "GTC", "IOC", "FOK"])
def test_time_in_force_is_kept(market: Market, time_in_force: str) -> None:
    response = post_order(client_for("000002"), order_body(timeInForce=time_in_force))

    assert response.status_code == 201, response.content
    assert response.json()["timeInForce"] == time_in_force
    assert Order.objects.get().time_in_force == time_in_force


def test_time_in_force_defaults_to_day(market: Market) -> None:
    # when timeInForce is left out
    response = post_order(client_for("000002"), order_body(timeInForce=MISSING))

    # then the order is a Day order
    assert response.status_code == 201
    assert response.json()["timeInForce"] == "Day"
    assert Order.objects.get().time_in_force == "Day"


def test_market_order_without_price_is_accepted(market: Market) -> None:
    response = post_order(client_for("000002"), order_body(type="Market", price=MISSING, timeInForce="IOC"))

    assert response.status_code == 201, response.content
    assert response.json()["price"] is None
    assert response.json()["type"] == "Market"
    assert Order.objects.get().price is None


def test_json_number_price_is_kept_exactly(market: Market) -> None:
    # when the price is sent as a JSON number rather than a string
    response = post_order(client_for("000002"), order_body(price=161.9))

    # then it is stored exactly and answered on the cent
    assert response.status_code == 201, response.content
    assert response.json()["price"] == "161.90"
    assert Order.objects.get().price == Decimal("161.9")


# --- 3. auth and visibility ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/orders"),
        ("post", "/api/orders"),
        ("get", "/api/trades"),
        ("get", "/api/orders/{order_id}"),
        ("post", "/api/orders/{order_id}/cancel"),
        ("get", "/api/schema/"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Token not-a-real-token", "Bearer abc"], ids=["none", "bad", "bearer"])
def test_missing_or_invalid_token_is_401(market: Market, method: str, path: str, authorization: str | None) -> None:
    # given an existing order and a client with no or a bad token
    order = placed(quantity=100, price="200.00")
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    # when it calls the endpoint
    url = path.format(order_id=order.order_id)
    if method == "post":
        response = client.post(url, data=json.dumps(order_body()), content_type="application/json")
    else:
        response = client.get(url)

    # then it is a 401 saying why (JSON on the API; the schema view renders it as OpenAPI) and nothing changed
    assert response.status_code == 401
    assert b"detail" in response.content
    if "schema" not in path:
        assert "detail" in response.json()
    assert Order.objects.count() == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW


def test_health_needs_no_token(market: Market) -> None:
    # when an anonymous caller asks for health
    response = APIClient().get("/api/health")

    # then every dependency is ok
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_client_cannot_place_for_another_customer(market: Market) -> None:
    # given a client token of customer 000003
    client = client_for("000003")

    # when it places an order for 000002
    response = post_order(client, order_body(customerId="000002"))

    # then it is forbidden, naming customerId, and nothing is recorded
    assert response.status_code == 403
    assert "customerId" in response.json()
    assert Order.objects.count() == 0


def test_client_cannot_place_for_an_unknown_customer(market: Market) -> None:
    # when a client places for a customer that does not exist
    response = post_order(client_for("000003"), order_body(customerId="999999"))

    # then it is forbidden like any other customer's (no probing which customers exist)
    assert response.status_code == 403
    assert Order.objects.count() == 0


@pytest.fixture
def two_customers_trading(market: Market) -> dict[str, list[Order]]:
    """Filled and resting orders for 000002 and 000003."""
    orders: dict[str, list[Order]] = {"000002": [], "000003": []}
    for customer_id in orders:
        filled = placed(customer_id, quantity=300, price="260.00")
        drive(filled)
        assert filled.status == OrderStatus.FILLED
        resting = placed(customer_id, quantity=100, price="200.00")
        drive(resting)
        orders[customer_id] += [filled, resting]
    return orders


def test_client_lists_only_its_own_orders(two_customers_trading: dict[str, list[Order]]) -> None:
    # when each client lists orders
    for customer_id, own in two_customers_trading.items():
        response = client_for(customer_id).get("/api/orders")

        # then it sees exactly its own
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == len(own)
        assert {row["orderId"] for row in body["results"]} == {str(order.order_id) for order in own}
        assert {row["customerId"] for row in body["results"]} == {customer_id}


def test_client_cannot_filter_its_way_to_another_customers_orders(
    two_customers_trading: dict[str, list[Order]],
) -> None:
    # when 000002 filters on 000003
    response = client_for("000002").get("/api/orders", {"customerId": "000003"})
    trades = client_for("000002").get("/api/trades", {"customerId": "000003"})

    # then it sees nothing
    assert response.status_code == trades.status_code == 200
    assert response.json()["count"] == 0
    assert trades.json()["count"] == 0


def test_client_lists_only_its_own_trades(two_customers_trading: dict[str, list[Order]]) -> None:
    for customer_id, own in two_customers_trading.items():
        # when each client lists trades
        response = client_for(customer_id).get("/api/trades")

        # then it sees exactly its own fills
        assert response.status_code == 200
        body = response.json()
        expected = set(Trade.objects.filter(order__in=own).values_list("trade_id", flat=True))
        assert expected
        assert body["count"] == len(expected)
        assert {uuid.UUID(row["tradeId"]) for row in body["results"]} == expected
        assert {row["customerId"] for row in body["results"]} == {customer_id}


def test_staff_see_every_order_and_trade(two_customers_trading: dict[str, list[Order]]) -> None:
    # when staff list orders and trades
    client = staff_client()
    orders = client.get("/api/orders")
    trades = client.get("/api/trades")

    # then they see both customers'
    assert orders.status_code == trades.status_code == 200
    assert orders.json()["count"] == Order.objects.count() == 4
    assert {row["customerId"] for row in orders.json()["results"]} == {"000002", "000003"}
    assert trades.json()["count"] == Trade.objects.count()
    assert {row["customerId"] for row in trades.json()["results"]} == {"000002", "000003"}


def test_staff_filter_orders_by_customer(two_customers_trading: dict[str, list[Order]]) -> None:
    response = staff_client().get("/api/orders", {"customerId": "000003"})

    assert response.status_code == 200
    assert {row["orderId"] for row in response.json()["results"]} == {
        str(order.order_id) for order in two_customers_trading["000003"]
    }


def test_another_customers_order_is_404_for_a_client_and_200_for_staff(market: Market) -> None:
    # given an order of 000003
    order = placed("000003", quantity=100, price="200.00")

    # when 000002 and staff ask for it
    as_client = client_for("000002").get(f"/api/orders/{order.order_id}")
    as_owner = client_for("000003").get(f"/api/orders/{order.order_id}")
    as_staff = staff_client().get(f"/api/orders/{order.order_id}")

    # then only the owner and staff see it
    assert as_client.status_code == 404
    assert "detail" in as_client.json()
    assert as_owner.status_code == 200
    assert as_staff.status_code == 200
    assert as_staff.json()["orderId"] == str(order.order_id)


def test_client_cannot_cancel_another_customers_order(market: Market) -> None:
    # given a resting order of 000003
    order = placed("000003", quantity=100, price="200.00")
    drive(order)
    assert order.status == OrderStatus.ROUTED

    # when 000002 tries to cancel it
    response = client_for("000002").post(f"/api/orders/{order.order_id}/cancel")

    # then it is not found and the order still rests
    assert response.status_code == 404
    order.refresh_from_db()
    assert order.status == OrderStatus.ROUTED


def test_staff_can_place_for_any_customer(market: Market) -> None:
    # when staff place for two different customers
    client = staff_client()
    first = post_order(client, order_body(customerId="000005"))
    second = post_order(client, order_body(customerId="000009", quantity=10))

    # then both are recorded for those customers, entered by the staff user
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["customerId"] == "000005"
    assert second.json()["customerId"] == "000009"
    order = Order.objects.get(order_id=first.json()["orderId"])
    assert order.customer == Customer.objects.get(customer_id="000005")
    assert order.entered_by is not None
    assert order.entered_by.username == "desk"


@pytest.mark.parametrize("suffix", ["", "/cancel"])
def test_unknown_order_id_is_404_json(market: Market, suffix: str) -> None:
    # when staff ask about an order that does not exist
    client = staff_client()
    path = f"/api/orders/{uuid.uuid4()}{suffix}"
    response = client.post(path) if suffix else client.get(path)

    # then it is a JSON 404
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


@pytest.mark.parametrize("order_id", ["123", "not-a-uuid", "00000000-0000-0000-0000-00000000000g"])
def test_non_uuid_order_id_is_404(market: Market, order_id: str) -> None:
    response = staff_client().get(f"/api/orders/{order_id}")

    assert response.status_code == 404


# --- 4. clientOrderId idempotency ------------------------------------------------------------------------


def test_same_client_order_id_and_body_replays_the_original(market: Market) -> None:
    # given an order placed with a clientOrderId
    client = client_for("000002")
    body = order_body(clientOrderId="abc-1")
    first = post_order(client, body)

    # when the same request is sent again
    second = post_order(client, body)

    # then the first is 201, the replay 200 with the same order, and there is one order
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["orderId"] == first.json()["orderId"]
    assert second.json()["clientOrderId"] == "abc-1"
    assert Order.objects.count() == 1


def test_equivalent_body_with_the_same_client_order_id_is_a_replay(market: Market) -> None:
    # given an order with price "161.90" and an explicit Day
    client = client_for("000002")
    first = post_order(client, order_body(clientOrderId="abc-1", timeInForce="Day"))

    # when the same order is sent with the price as a number and the default timeInForce
    second = post_order(client, order_body(clientOrderId="abc-1", price=161.9, timeInForce=MISSING))

    # then it is recognised as the same request
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["orderId"] == first.json()["orderId"]
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"quantity": 8615}, id="quantity"),
        pytest.param({"price": "161.91"}, id="price"),
        pytest.param({"direction": "Sell"}, id="direction"),
        pytest.param({"timeInForce": "GTC"}, id="timeInForce"),
    ],
)
def test_same_client_order_id_with_another_body_is_409(market: Market, changes: dict[str, Any]) -> None:
    # given an order placed with a clientOrderId
    client = client_for("000002")
    first = post_order(client, order_body(clientOrderId="abc-1"))

    # when the same id comes with a different order
    second = post_order(client, order_body(clientOrderId="abc-1", **changes))

    # then it is a conflict naming clientOrderId, and the original stands alone
    assert first.status_code == 201
    assert second.status_code == 409
    assert "clientOrderId" in second.json()
    assert Order.objects.count() == 1


def test_same_client_order_id_for_two_customers_is_two_orders(market: Market) -> None:
    # when two customers use the same clientOrderId
    first = post_order(client_for("000002"), order_body(clientOrderId="abc-1"))
    second = post_order(client_for("000003"), order_body(customerId="000003", quantity=10, clientOrderId="abc-1"))

    # then each gets its own order
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["orderId"] != second.json()["orderId"]
    assert Order.objects.filter(client_order_id="abc-1").count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_record_one_order(market: Market) -> None:
    # given eight clients of the same customer, each about to send the same request
    threads_count = 8
    clients = [client_for("000002") for _ in range(threads_count)]
    body = order_body(clientOrderId="race-1")
    barrier = threading.Barrier(threads_count)
    results: list[tuple[int, dict[str, Any]] | None] = [None] * threads_count
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = post_order(clients[index], body)
            results[index] = (response.status_code, response.json())
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    # when they all send it at once
    threads = [threading.Thread(target=send, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # then exactly one created the order, the others replayed it, and there is one order
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert all(result is not None for result in results)
    statuses = sorted(result[0] for result in results if result is not None)
    assert statuses == [200] * (threads_count - 1) + [201], results
    order_ids = {result[1]["orderId"] for result in results if result is not None}
    assert len(order_ids) == 1
    assert Order.objects.filter(client_order_id="race-1").count() == 1
    assert Order.objects.count() == 1
    assert str(Order.objects.get().order_id) in order_ids


# --- 5. lists ----------------------------------------------------------------------------------------------


def test_order_list_is_paginated(market: Market) -> None:
    # given three orders
    orders = [placed(quantity=100 + index, price="200.00") for index in range(3)]
    client = client_for("000002")

    # when listed two to a page
    first = client.get("/api/orders", {"pageSize": 2})
    second = client.get("/api/orders", {"pageSize": 2, "page": 2})

    # then the shape is count/next/previous/results, newest first
    assert first.status_code == second.status_code == 200
    page = first.json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 3
    assert page["previous"] is None
    assert page["next"] is not None
    assert "page=2" in page["next"]
    assert [row["orderId"] for row in page["results"]] == [str(orders[2].order_id), str(orders[1].order_id)]
    last = second.json()
    assert last["next"] is None
    assert last["previous"] is not None
    assert [row["orderId"] for row in last["results"]] == [str(orders[0].order_id)]


def test_page_beyond_the_last_is_404(market: Market) -> None:
    placed(quantity=100, price="200.00")

    response = client_for("000002").get("/api/orders", {"page": 5})

    assert response.status_code == 404
    assert "detail" in response.json()


def test_page_size_is_capped_at_1000(market: Market) -> None:
    # given 1001 orders
    customer = Customer.objects.get(customer_id="000002")
    ticker = market["ticker"]
    Order.objects.bulk_create(
        [
            Order(
                sequence=10_000_000 + index,
                customer=customer,
                ticker=ticker,
                direction="Buy",
                order_type="Limit",
                quantity=1,
                price=Decimal("200.00"),
            )
            for index in range(1001)
        ]
    )

    # when a page of 5000 is asked for
    response = client_for("000002").get("/api/orders", {"pageSize": 5000})

    # then at most 1000 come back
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1001
    assert len(body["results"]) == 1000
    assert body["next"] is not None


@pytest.fixture
def mixed_orders(market: Market) -> dict[str, Order]:
    make_ticker("PENNY", "0.5")
    filled = placed(quantity=100, price="260.00")
    drive(filled)
    resting = placed(quantity=100, price="200.00")
    drive(resting)
    new_sell = placed(direction="Sell", quantity=50, price="300.00")
    penny = placed(ticker="PENNY", quantity=1000, price="0.4")
    assert (filled.status, resting.status, new_sell.status, penny.status) == (
        OrderStatus.FILLED,
        OrderStatus.ROUTED,
        OrderStatus.NEW,
        OrderStatus.NEW,
    )
    return {"filled": filled, "resting": resting, "new_sell": new_sell, "penny": penny}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "Filled"}, {"filled"}),
        ({"status": "Routed"}, {"resting"}),
        ({"status": "New"}, {"new_sell", "penny"}),
        ({"status": "Cancelled"}, set()),
        ({"ticker": "PENNY"}, {"penny"}),
        ({"ticker": "coin"}, {"filled", "resting", "new_sell"}),
        ({"ticker": "NOPE"}, set()),
        ({"direction": "Sell"}, {"new_sell"}),
        ({"direction": "Buy"}, {"filled", "resting", "penny"}),
        ({"direction": "Buy", "ticker": "COIN", "status": "Routed"}, {"resting"}),
        ({"customerId": "000002"}, {"filled", "resting", "new_sell", "penny"}),
    ],
)
def test_order_list_filters(mixed_orders: dict[str, Order], query: dict[str, str], expected: set[str]) -> None:
    # when the list is filtered
    response = client_for("000002").get("/api/orders", query)

    # then exactly the matching orders come back
    assert response.status_code == 200
    assert {row["orderId"] for row in response.json()["results"]} == {
        str(mixed_orders[name].order_id) for name in expected
    }


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/orders", {"status": "Bogus"}, "status"),
        ("/api/orders", {"direction": "Up"}, "direction"),
        ("/api/orders", {"dateFrom": "yesterday"}, "dateFrom"),
        ("/api/trades", {"exchangeType": "Bogus"}, "exchangeType"),
        ("/api/trades", {"orderId": "not-a-uuid"}, "orderId"),
        ("/api/trades", {"dateTo": "2024-13-45"}, "dateTo"),
        # valid ISO 8601 whose instant is past year 9999 in UTC
        ("/api/trades", {"dateFrom": "9999-12-31T23:00:00-05:00"}, "dateFrom"),
    ],
)
def test_invalid_filter_value_is_400_naming_it(market: Market, path: str, query: dict[str, str], field: str) -> None:
    response = client_for("000002").get(path, query)

    assert response.status_code == 400
    assert field in response.json()


def test_a_date_filter_with_an_offset_means_that_instant(market: Market) -> None:
    order = placed(quantity=100, price="200.00")
    created = order.created_at.astimezone(UTC)

    def count(moment: datetime) -> int:
        response = client_for("000002").get("/api/orders", {"dateFrom": moment.isoformat()})
        assert response.status_code == 200
        return int(response.json()["count"])

    # the same instant written in New York time and a minute later
    new_york = zoneinfo.ZoneInfo("America/New_York")
    assert count((created - timedelta(seconds=1)).astimezone(new_york)) == 1
    assert count((created + timedelta(minutes=1)).astimezone(new_york)) == 0
    # an offset Python allows and Postgres would refuse (beyond 16 hours) is still that instant
    assert count((created - timedelta(seconds=1)).astimezone(timezone(-timedelta(hours=20, minutes=3)))) == 1


@pytest.mark.parametrize("page_size", ["abc", "0", "-1"])
def test_nonsense_page_size_is_not_a_500(market: Market, page_size: str) -> None:
    placed(quantity=100, price="200.00")

    response = client_for("000002").get("/api/orders", {"pageSize": page_size})

    # DRF falls back to the default page size for a page size it cannot use
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_trades_of_one_order_in_the_seed_shape(market: Market) -> None:
    # given two filled orders of the same customer, one of them split
    order = placed(quantity=2500, price="260.00")
    drive(order)
    other = placed(quantity=100, price="260.00")
    drive(other)
    assert order.status == other.status == OrderStatus.FILLED

    # when the trades of the first are listed
    response = client_for("000002").get("/api/trades", {"orderId": str(order.order_id)})

    # then exactly its fills come back, each in the seed's output shape
    assert response.status_code == 200
    body = response.json()
    expected = {str(trade_id) for trade_id in Trade.objects.filter(order=order).values_list("trade_id", flat=True)}
    assert body["count"] == len(expected) > 1
    assert {row["tradeId"] for row in body["results"]} == expected
    assert sum(row["quantity"] for row in body["results"]) == 2500
    for row in body["results"]:
        assert list(row) == TRADE_KEYS
        trade = Trade.objects.select_related("pool").get(trade_id=row["tradeId"])
        assert row["customerId"] == "000002"
        assert row["direction"] == "Buy"
        assert row["ticker"] == "COIN"
        assert row["type"] == "Limit"
        assert row["orderId"] == str(order.order_id)
        assert row["initialQuantity"] == 2500
        assert row["split"] == "Yes"
        assert row["quantity"] == trade.quantity
        assert Decimal(row["price"]) == trade.price
        assert isinstance(row["price"], str)
        assert row["fee"] == str(trade.fee.quantize(Decimal("0.01")))
        assert row["exchange"] == trade.pool.name
        assert row["exchangeType"] == ("DarkPool" if trade.pool.kind == PoolKind.DARK else "LitPool")
        assert row["orderDate"].endswith("Z")
        assert row["tradeDate"].endswith("Z")
        assert row["settlementDate"] is None


def test_unsplit_order_trades_say_split_no(market: Market) -> None:
    order = placed(quantity=100, price="260.00")
    drive(order)

    response = client_for("000002").get("/api/trades", {"orderId": str(order.order_id)})

    assert response.status_code == 200
    assert [row["split"] for row in response.json()["results"]] == ["No"]


@pytest.mark.parametrize(("exchange_type", "kind"), [("DarkPool", PoolKind.DARK), ("LitPool", PoolKind.LIT)])
def test_trades_filter_by_exchange_type(market: Market, exchange_type: str, kind: str) -> None:
    # given an order large enough to fill in both dark and lit pools
    order = placed(quantity=4000, price="260.00")
    drive(order)
    assert Trade.objects.filter(order=order, pool__kind=PoolKind.DARK).exists()
    assert Trade.objects.filter(order=order, pool__kind=PoolKind.LIT).exists()

    # when trades are filtered by exchange type
    response = client_for("000002").get("/api/trades", {"exchangeType": exchange_type})

    # then only that kind comes back, all of them
    assert response.status_code == 200
    rows = response.json()["results"]
    assert {row["exchangeType"] for row in rows} == {exchange_type}
    assert {row["tradeId"] for row in rows} == {
        str(trade_id) for trade_id in Trade.objects.filter(pool__kind=kind).values_list("trade_id", flat=True)
    }


def test_order_detail_has_children_and_trades(market: Market) -> None:
    # given a split, filled order
    order = placed(quantity=2500, price="260.00")
    drive(order)

    # when it is fetched
    response = client_for("000002").get(f"/api/orders/{order.order_id}")

    # then its children and its trades come with it
    assert response.status_code == 200
    body = response.json()
    assert body["orderId"] == str(order.order_id)
    assert body["status"] == "Filled"
    assert body["filledQuantity"] == 2500
    assert [child["quantity"] for child in body["childOrders"]] == [1000, 1000, 500]
    assert {child["status"] for child in body["childOrders"]} == {"Filled"}
    assert all(child["exchangeType"] in {"LitPool", "DarkPool"} for child in body["childOrders"])
    assert {trade["tradeId"] for trade in body["trades"]} == {
        str(trade_id) for trade_id in Trade.objects.filter(order=order).values_list("trade_id", flat=True)
    }
    assert all(list(trade) == TRADE_KEYS for trade in body["trades"])
    assert sum(trade["quantity"] for trade in body["trades"]) == 2500


def test_new_order_detail_has_no_children_or_trades(market: Market) -> None:
    order = placed(quantity=100, price="200.00")

    response = client_for("000002").get(f"/api/orders/{order.order_id}")

    assert response.status_code == 200
    assert response.json()["childOrders"] == []
    assert response.json()["trades"] == []


# --- 6. cancel -----------------------------------------------------------------------------------------------


def test_cancel_a_resting_order_and_again(market: Market) -> None:
    # given a resting order
    order = placed(quantity=500, price="200.00")
    drive(order)
    assert order.status == OrderStatus.ROUTED
    client = client_for("000002")

    # when it is cancelled twice through the API
    first = client.post(f"/api/orders/{order.order_id}/cancel")
    second = client.post(f"/api/orders/{order.order_id}/cancel")

    # then both answer 200 with the cancelled order
    assert first.status_code == 200, first.content
    assert first.json()["status"] == "Cancelled"
    assert first.json()["orderId"] == str(order.order_id)
    assert second.status_code == 200
    assert second.json()["status"] == "Cancelled"
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_cancel_a_new_order(market: Market) -> None:
    # given an order not yet routed
    order = placed(quantity=500, price="200.00")

    # when it is cancelled
    response = client_for("000002").post(f"/api/orders/{order.order_id}/cancel")

    # then it is cancelled
    assert response.status_code == 200
    assert response.json()["status"] == "Cancelled"


def test_cancel_a_filled_order_is_409(market: Market) -> None:
    # given a filled order
    order = placed(quantity=100, price="260.00")
    drive(order)
    assert order.status == OrderStatus.FILLED

    # when its owner tries to cancel it
    response = client_for("000002").post(f"/api/orders/{order.order_id}/cancel")

    # then it is a conflict and the order stays filled
    assert response.status_code == 409
    assert "status" in response.json()
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED


# --- 7. schema ---------------------------------------------------------------------------------------------


def test_openapi_schema_is_served_to_staff(market: Market) -> None:
    # when staff fetch the schema
    response = staff_client().get("/api/schema/", {"format": "json"})

    # then it is an OpenAPI 3 document describing the order endpoints
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/orders" in schema["paths"]
    assert "/api/trades" in schema["paths"]


def test_openapi_schema_default_format(market: Market) -> None:
    response = staff_client().get("/api/schema/")

    assert response.status_code == 200
    assert b"openapi" in response.content


def test_unknown_api_path_is_json_404() -> None:
    # given any client, when it asks for an endpoint that does not exist
    response = APIClient().get("/api/nope")

    # then the answer is JSON naming the path, not an HTML page
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "/api/nope" in response.json()["detail"]
