"""The API and the fills stream enforce the screens' permissions (issue 10, item 2).

Every write endpoint is called by every kind of caller: a client token of the order's customer, a
client token of another customer, a staff token of each role (and of no role), a logged-in Trader and
Operations session as the screens use, and no credentials at all. Where the call is refused nothing
may have been written.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from broker import access
from broker import services as broker_services
from broker.models import MarketDataJob
from broker.roles import ROLE_PERMISSIONS
from orders import roles, services
from orders.models import Halt, HaltEvent, Order, OrderEvent, OrderStatus, Trade, TradeVersion
from reporting import aggregation
from tests.conftest import Market, client_for, drive, make_customers, place
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db

CUSTOMER = "000002"
OTHER_CUSTOMER = "000003"
NO_ROLE = "no role"


def staff_token_client(username: str, role: str) -> APIClient:
    """A staff token for a user of `role` (NO_ROLE: staff with no role at all)."""
    user = staff_user(username, role) if role != NO_ROLE else staff_user(username, roles.TRADER)
    if role == NO_ROLE:
        user.groups.clear()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def staff_session_client(username: str, role: str) -> APIClient:
    staff_user(username, role)
    client = APIClient()
    assert client.login(username=username, password=PASSWORD)
    return client


CALLERS: dict[str, Callable[[], APIClient]] = {
    "client": lambda: client_for(CUSTOMER),
    "other-client": lambda: client_for(OTHER_CUSTOMER),
    "trader-token": lambda: staff_token_client("trader-t", roles.TRADER),
    "operations-token": lambda: staff_token_client("ops-t", roles.OPERATIONS),
    "admin-token": lambda: staff_token_client("admin-t", roles.ADMIN),
    "no-role-token": lambda: staff_token_client("nobody-t", NO_ROLE),
    "trader-session": lambda: staff_session_client("trader-s", roles.TRADER),
    "operations-session": lambda: staff_session_client("ops-s", roles.OPERATIONS),
    "no-token": APIClient,
}


def written() -> dict[str, Any]:
    """Everything a write endpoint could have changed."""
    return {
        "orders": Order.objects.count(),
        "order statuses": sorted(Order.objects.values_list("status", flat=True)),
        "order events": OrderEvent.objects.count(),
        "halts": Halt.objects.count(),
        "halt events": HaltEvent.objects.count(),
        "trades": sorted(Trade.objects.values_list("version", "price", "quantity", "busted")),
        "trade versions": TradeVersion.objects.count(),
        "market-data jobs": MarketDataJob.objects.count(),
    }


# endpoint -> (how to call it given the fixtures, the permission a staff caller needs)
def post_order(client: APIClient) -> Any:
    body = {"customerId": CUSTOMER, "direction": "Buy", "ticker": "COIN", "type": "Limit", "quantity": 10}
    return client.post("/api/orders", {**body, "price": "250.00"}, format="json")


def post_cancel(client: APIClient) -> Any:
    return client.post(f"/api/orders/{open_order_id()}/cancel", format="json")


def post_amend(client: APIClient) -> Any:
    path = f"/api/trades/{filled_trade_id()}/amend"
    return client.post(path, {"price": "255.00", "reason": "venue correction"}, format="json")


def post_bust(client: APIClient) -> Any:
    return client.post(f"/api/trades/{filled_trade_id()}/bust", {"reason": "clearly erroneous"}, format="json")


def post_halt(client: APIClient) -> Any:
    body = {"scope": "Ticker", "target": "COIN", "active": True, "reason": "news pending"}
    return client.post("/api/halts", body, format="json")


def post_market_data(client: APIClient) -> Any:
    return client.post("/api/market-data", {"tickers": ["COIN"]}, format="json")


def open_order_id() -> str:
    return str(Order.objects.get(client_order_id="matrix-open").order_id)


def filled_trade_id() -> str:
    return str(
        Trade.objects.filter(customer__customer_id=CUSTOMER).order_by("pk").values_list("trade_id", flat=True)[0]
    )


ENDPOINTS: dict[str, tuple[Callable[[APIClient], Any], str]] = {
    "POST /api/orders": (post_order, roles.ENTER_ORDER),
    "POST /api/orders/{id}/cancel": (post_cancel, roles.CANCEL_ORDER),
    "POST /api/trades/{id}/amend": (post_amend, roles.CORRECT_TRADE),
    "POST /api/trades/{id}/bust": (post_bust, roles.CORRECT_TRADE),
    "POST /api/halts": (post_halt, roles.OPERATE_KILL_SWITCH),
    "POST /api/market-data": (post_market_data, roles.VIEW_BLOTTER),
}

# Expected status per endpoint, in the order of CALLERS.
MATRIX: dict[str, tuple[int, ...]] = {
    #                              client other trader ops admin norole trader-s ops-s none
    "POST /api/orders":            (201,   403,  201,   403, 201,  403,   201,     403,  401),
    "POST /api/orders/{id}/cancel": (200,  404,  200,   403, 200,  403,   200,     403,  401),
    "POST /api/trades/{id}/amend": (403,   403,  403,   200, 200,  403,   403,     200,  401),
    "POST /api/trades/{id}/bust":  (403,   403,  403,   200, 200,  403,   403,     200,  401),
    "POST /api/halts":             (403,   403,  403,   200, 200,  403,   403,     200,  401),
    "POST /api/market-data":       (202,   202,  202,   202, 202,  403,   202,     202,  401),
}  # fmt: skip


@pytest.fixture
def books(market: Market) -> Market:
    """An open order and a filled trade of CUSTOMER, made through the services as the desk would."""
    order = place(CUSTOMER, quantity=100, price="200.00", timeInForce="GTC", clientOrderId="matrix-open")
    drive(order)
    assert order.status not in (OrderStatus.CANCELLED, OrderStatus.FILLED)
    filled = place(CUSTOMER, quantity=100, price="260.00")
    drive(filled)
    assert Trade.objects.filter(order=filled).exists()
    return market


def test_the_matrix_names_every_caller() -> None:
    assert all(len(statuses) == len(CALLERS) for statuses in MATRIX.values())
    assert set(MATRIX) == set(ENDPOINTS)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("caller", list(CALLERS))
def test_write_endpoints_enforce_the_screens_permissions(books: Market, endpoint: str, caller: str) -> None:
    # given a caller and the books as they stand
    call, permission = ENDPOINTS[endpoint]
    expected = MATRIX[endpoint][list(CALLERS).index(caller)]
    client = CALLERS[caller]()
    before = written()

    # when it calls the endpoint
    response = call(client)

    # then it gets the status of the matrix, and a refusal wrote nothing
    assert response.status_code == expected, (caller, endpoint, response.content)
    if expected >= 400:
        assert written() == before
    else:
        assert written() != before
    if expected == 403 and caller not in ("other-client",):
        # a refused permission is named: the 403 says what the caller lacks
        assert response.json() == {"detail": f"You need permission {permission} to do this."}


READS = [
    "/api/orders",
    "/api/orders/{order}",
    "/api/trades",
    "/api/trades/{trade}/history",
    "/api/customers/000002",
    "/api/customers/000002/holdings",
    "/api/tickers",
    "/api/tickers/COIN",
    "/api/tickers/COIN/history",
    "/api/customers/000002/positions?date={today}",
    "/api/customers/000002/pnl?start={today}&end={today}",
    "/api/customers/000002/portfolio?date={today}",
    "/api/customers/000002/activities",
    "/api/customers/000002/statements?month={month}",
    "/api/trades/{trade}/confirmation",
]


def _read_path(path: str) -> str:
    today = aggregation.today()
    return path.format(order=open_order_id(), trade=filled_trade_id(), today=today, month=f"{today:%Y-%m}")


@pytest.mark.parametrize("path", READS)
def test_staff_without_a_role_read_nothing_and_each_role_with_the_blotter_reads(books: Market, path: str) -> None:
    # given staff without a role, and staff of each role (all of which hold orders.view_blotter)
    nobody = staff_token_client("nobody", NO_ROLE)
    # when / then
    refused = nobody.get(_read_path(path))
    assert refused.status_code == 403
    assert refused.json() == {"detail": f"You need permission {roles.VIEW_BLOTTER} to do this."}
    for username, role in (("t", roles.TRADER), ("o", roles.OPERATIONS), ("a", roles.ADMIN)):
        assert staff_token_client(username, role).get(_read_path(path)).status_code == 200, role
    assert client_for(CUSTOMER).get(_read_path(path)).status_code == 200


@pytest.mark.parametrize("path", ["/api/reports/customers", "/api/reports/tickers"])
def test_the_reports_across_customers_are_for_staff_with_the_blotter(books: Market, path: str) -> None:
    # given staff without a role, staff of each role, and a client
    path = f"{path}?date={aggregation.today()}"
    # when / then staff need orders.view_blotter, and a client token is refused whatever it holds
    refused = staff_token_client("nobody", NO_ROLE).get(path)
    assert refused.status_code == 403
    assert refused.json() == {"detail": f"You need permission {roles.VIEW_BLOTTER} to do this."}
    for username, role in (("t", roles.TRADER), ("o", roles.OPERATIONS), ("a", roles.ADMIN)):
        assert staff_token_client(username, role).get(path).status_code == 200, role
    assert staff_session_client("s", roles.TRADER).get(path).status_code == 200
    assert client_for(CUSTOMER).get(path).status_code == 403
    assert APIClient().get(path).status_code == 401


def test_halts_are_listed_for_the_kill_switch_only(books: Market) -> None:
    # given
    trader, operations = staff_token_client("t", roles.TRADER), staff_session_client("o", roles.OPERATIONS)
    # when
    refused, listed = trader.get("/api/halts"), operations.get("/api/halts")
    # then
    assert refused.status_code == 403
    assert refused.json() == {"detail": f"You need permission {roles.OPERATE_KILL_SWITCH} to do this."}
    assert listed.status_code == 200
    assert client_for(CUSTOMER).get("/api/halts").status_code == 403


def test_the_screen_and_the_api_refuse_with_the_same_words(books: Market) -> None:
    # given a Trader's browser session
    trader = staff_session_client("trader-s", roles.TRADER)
    # when it opens the kill switch screen and calls the kill switch endpoint
    screen, api = trader.get("/operations/halts/"), trader.get("/api/halts")
    # then both are 403 naming the permission the Trader lacks
    message = f"You need permission {roles.OPERATE_KILL_SWITCH} to do this."
    assert (screen.status_code, api.status_code) == (403, 403)
    assert message in screen.content.decode()
    assert api.json() == {"detail": message}


def test_the_admin_role_holds_every_permission_a_screen_or_endpoint_checks() -> None:
    # the groups come from the roles migration; the Admin group holds every permission of every role
    admin = Group.objects.get(name=roles.ADMIN)
    held = {f"{p.content_type.app_label}.{p.codename}" for p in admin.permissions.select_related("content_type")}
    assert held >= {permission for permissions in ROLE_PERMISSIONS.values() for permission in permissions}
    for role, permissions in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        assert {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()} == set(permissions)


def test_cancel_by_staff_without_the_permission_leaves_the_order_open(books: Market) -> None:
    # given an open order, and Operations (who may halt but not cancel)
    order = Order.objects.get(client_order_id="matrix-open")
    # when
    response = staff_token_client("ops", roles.OPERATIONS).post(f"/api/orders/{order.order_id}/cancel")
    # then
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status != OrderStatus.CANCELLED
    services.order_cancel(order_id=order.pk, actor="desk")  # and it was still cancellable


def test_a_client_request_looks_its_customer_up_once(market: Market, django_assert_num_queries: Any) -> None:
    # given a client user, as a request carries it
    user = Token.objects.get(key=broker_services.api_token_for_customer(customer_id=CUSTOMER).key).user
    # when the view and then order entry's validation both ask what it may do
    with django_assert_num_queries(1):
        first = access.customer_scope(user=user, permission=roles.ENTER_ORDER)
        again = access.customer_for_user(user=user, customer_id=CUSTOMER, permission=roles.ENTER_ORDER)
    # then both got its customer from one query
    assert first == again == market["customers"][CUSTOMER]


# --- the fills stream -----------------------------------------------------------------------------------


async def _first_message_or_close(token: str) -> dict[str, Any]:
    from broker.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/fills/?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    message = await communicator.receive_output(timeout=10)
    if message["type"] == "websocket.close":
        return {"closed": message.get("code")}
    await communicator.disconnect()
    return dict(json.loads(message["text"]))


@pytest.mark.django_db(transaction=True)  # the consumer reads the user on its own connection
def test_the_fills_stream_refuses_staff_without_the_blotter() -> None:
    # given staff without a role, a Trader, an Operations user and a client
    make_customers()
    nobody = Token.objects.create(user=staff_user("nobody", roles.TRADER)).key
    Token.objects.get(key=nobody).user.groups.clear()
    trader = Token.objects.create(user=staff_user("trader", roles.TRADER)).key
    operations = Token.objects.create(user=staff_user("ops", roles.OPERATIONS)).key
    client_token = broker_services.api_token_for_customer(customer_id=CUSTOMER).key

    # when each connects / then staff without orders.view_blotter are closed with 4403
    assert asyncio.run(_first_message_or_close(nobody)) == {"closed": 4403}
    assert asyncio.run(_first_message_or_close(trader)) == {"type": "subscribed", "scope": "all"}
    assert asyncio.run(_first_message_or_close(operations)) == {"type": "subscribed", "scope": "all"}
    subscribed = asyncio.run(_first_message_or_close(client_token))
    assert subscribed["type"] == "subscribed"
    assert subscribed["scope"] != "all"
