"""An idle fills socket stays open: the channel layer's blocking read must not time out (issue 10, item 1).

redis-py 8 gives every connection a 5 s socket timeout by default; channels-redis' core layer (used
until 2026-12-05) waited for the next message with a blocking BZPOPMIN of 5 s, so on an idle socket the
read timed out and the server closed the WebSocket with 1011 after about 5 s. The pub/sub layer polls
instead; this test still holds a socket idle for 30 s on the real web server and then expects the next
fill on that same socket, whatever the layer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from broker import services as broker_services
from pools import services as pool_services
from tests.conftest import give_shares, make_customers, make_pools, make_ticker
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

IDLE_SECONDS = 30  # the acceptance: six times redis-py's default 5 s socket timeout


@pytest.fixture
def demo_market() -> None:
    make_pools()
    make_customers()
    ticker = make_ticker("COIN", "256.62")
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN")


async def _idle(socket: websockets.ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Receive for `seconds` with nothing happening; a close (e.g. 1011) raises ConnectionClosed."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            received.append(json.loads(await asyncio.wait_for(socket.recv(), left)))
        except TimeoutError:
            break
    return received


def test_idle_socket_stays_open_for_30_seconds_and_then_receives_the_next_fill(stack: Stack, demo_market: None) -> None:
    # given a client's fills socket that has been idle for 30 s
    token = broker_services.api_token_for_customer(customer_id="000002").key
    order = {
        "customerId": "000002", "direction": "Buy", "ticker": "COIN", "type": "Limit",
        "quantity": 100, "price": "260.00", "timeInForce": "IOC",
    }  # fmt: skip

    async def scenario() -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
        async with websockets.connect(f"{stack.ws_url}/ws/fills/?token={token}") as socket:
            assert json.loads(await socket.recv())["type"] == "subscribed"
            try:
                during_idle = await _idle(socket, IDLE_SECONDS)
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                pytest.fail(f"the idle socket was closed by the server with code {code}")
            # when an order is placed through the API
            async with httpx.AsyncClient(base_url=stack.base_url) as client:
                response = await client.post("/api/orders", json=order, headers={"Authorization": f"Token {token}"})
            assert response.status_code == 201, response.text
            order_id = response.json()["orderId"]
            # then its fill arrives on the same socket (the wait is only a bound for a hung stack)
            after: list[dict[str, Any]] = []
            while not any(m.get("type") == "fill" and m["trade"]["orderId"] == order_id for m in after):
                after.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
            return during_idle, order_id, after

    during_idle, order_id, after = asyncio.run(scenario())

    assert all(message.get("type") not in ("fill", "order", "settled") for message in during_idle)
    fills = [m["trade"] for m in after if m.get("type") == "fill"]
    assert fills
    assert {trade["orderId"] for trade in fills} == {order_id}
