"""The seed order through the real stack: HTTP -> Celery worker process -> Postgres -> Redis -> WebSocket."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from django.contrib.auth import get_user_model
from django.test import Client
from websockets.typing import Origin

from broker import services as broker_services
from broker.roles import TRADER, role_group_ensure
from pools import services as pool_services
from tests.conftest import give_shares, make_customers, make_pools, make_ticker
from tests.integration.conftest import Stack, wait_until_quiet
from tests.invariants import all_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

SEED_TRADE_KEYS = {
    "customerId", "direction", "ticker", "type", "quantity", "price", "orderId", "orderDate", "initialQuantity",
    "split", "tradeId", "exchange", "exchangeType", "tradeDate", "fee", "settlementDate",
}  # fmt: skip


@pytest.fixture
def demo_market() -> None:
    make_pools()
    make_customers()
    ticker = make_ticker("COIN", "256.62")
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN")


async def _collect(url: str, into: list[dict[str, Any]], done: asyncio.Event, **connect: Any) -> None:
    async with websockets.connect(url, **connect) as socket:
        into.append(json.loads(await socket.recv()))  # the "subscribed" greeting
        while not done.is_set():
            try:
                into.append(json.loads(await asyncio.wait_for(socket.recv(), 0.2)))
            except TimeoutError:
                continue


def test_seed_order_fills_and_streams_only_to_its_customer(stack: Stack, demo_market: None) -> None:
    # given client tokens for two customers and a WebSocket for each
    own = broker_services.api_token_for_customer(customer_id="000002").key
    other = broker_services.api_token_for_customer(customer_id="000003").key
    seed = {
        "customerId": "000002", "direction": "Buy", "ticker": "COIN", "type": "Limit",
        "quantity": 8614, "price": "260.00", "timeInForce": "Day",
    }  # fmt: skip
    own_messages: list[dict[str, Any]] = []
    other_messages: list[dict[str, Any]] = []

    async def scenario() -> httpx.Response:
        done = asyncio.Event()
        listeners = [
            asyncio.create_task(_collect(f"{stack.ws_url}/ws/fills/?token={own}", own_messages, done)),
            asyncio.create_task(_collect(f"{stack.ws_url}/ws/fills/?token={other}", other_messages, done)),
        ]
        while len(own_messages) < 1 or len(other_messages) < 1:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            response = await client.post("/api/orders", json=seed, headers={"Authorization": f"Token {own}"})
        order_id = response.json().get("orderId")
        for _ in range(300):  # up to 30 s for the whole order to fill and stream
            filled = sum(
                message["trade"]["quantity"]
                for message in own_messages
                if message.get("type") == "fill" and message["trade"]["orderId"] == order_id
            )
            if filled >= seed["quantity"]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let any stray message to the other customer arrive
        done.set()
        await asyncio.gather(*listeners)
        return response

    # when the seed order is placed over HTTP
    response = asyncio.run(scenario())

    # then it was accepted, filled in child slices on dark and lit pools, and listed in the seed shape
    assert response.status_code == 201, response.text
    order_id = response.json()["orderId"]
    wait_until_quiet()
    auth = {"Authorization": f"Token {own}"}
    trades = httpx.get(f"{stack.base_url}/api/trades?orderId={order_id}&pageSize=1000", headers=auth).json()["results"]
    order = httpx.get(f"{stack.base_url}/api/orders/{order_id}", headers=auth).json()
    assert trades
    assert all(set(trade) == SEED_TRADE_KEYS for trade in trades)
    assert {trade["initialQuantity"] for trade in trades} == {8614}
    assert {trade["split"] for trade in trades} == {"Yes"}
    assert all(trade["quantity"] <= 1000 for trade in trades)
    assert all(Decimal(trade["price"]) <= Decimal("260.00") for trade in trades)
    assert {trade["exchangeType"] for trade in trades} == {"LitPool", "DarkPool"}
    assert sum(trade["quantity"] for trade in trades) == order["filledQuantity"] == 8614
    assert order["status"] == "Filled"
    # and the customer's socket received every one of those fills; the other customer's none
    streamed = {m["trade"]["tradeId"] for m in own_messages if m.get("type") == "fill"}
    assert streamed == {trade["tradeId"] for trade in trades}
    assert [m for m in other_messages if m.get("type") in ("fill", "order")] == []
    assert all_violations() == []


def test_websocket_refuses_missing_and_bad_credentials(stack: Stack) -> None:
    async def close_code(url: str, **connect: Any) -> int | None:
        try:
            async with websockets.connect(url, **connect) as socket:
                await socket.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        return None

    # no credentials at all, and a token that does not exist
    assert asyncio.run(close_code(f"{stack.ws_url}/ws/fills/", origin=Origin(stack.base_url))) == 4401
    assert asyncio.run(close_code(f"{stack.ws_url}/ws/fills/?token=nope")) == 4401


def test_staff_session_sees_every_fill_and_foreign_origins_are_refused(stack: Stack, demo_market: None) -> None:
    # given a logged-in staff browser session of a Trader (who may see the blotter, so every fill)
    trader = get_user_model().objects.create_user("trader", password="pw-for-tests", is_staff=True)
    trader.groups.add(role_group_ensure(role=TRADER))
    browser = Client()
    assert browser.login(username="trader", password="pw-for-tests")
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    client_token = broker_services.api_token_for_customer(customer_id="000005").key
    staff_messages: list[dict[str, Any]] = []

    async def scenario() -> int | None:
        done = asyncio.Event()
        listener = asyncio.create_task(
            _collect(
                f"{stack.ws_url}/ws/fills/",
                staff_messages,
                done,
                origin=Origin(stack.base_url),
                additional_headers={"Cookie": cookie},
            )
        )
        while not staff_messages:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            await client.post(
                "/api/orders",
                json={"customerId": "000005", "direction": "Sell", "ticker": "COIN", "type": "Market", "quantity": 300},
                headers={"Authorization": f"Token {client_token}"},
            )
        for _ in range(100):
            if any(message.get("type") == "fill" for message in staff_messages):
                break
            await asyncio.sleep(0.1)
        done.set()
        await listener
        try:
            async with websockets.connect(
                f"{stack.ws_url}/ws/fills/", origin=Origin("http://evil.example"), additional_headers={"Cookie": cookie}
            ) as socket:
                await socket.recv()
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None

    # when another customer's order fills
    foreign_origin = asyncio.run(scenario())

    # then the staff session saw it, and the same cookie from a foreign origin was refused
    assert staff_messages[0] == {"type": "subscribed", "scope": "all"}
    assert any(m.get("type") == "fill" and m["trade"]["customerId"] == "000005" for m in staff_messages)
    assert foreign_origin == 403
