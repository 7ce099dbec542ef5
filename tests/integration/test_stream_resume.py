"""The fill stream resumes across a disconnect mid-burst on the real stack: a client reads part of a
burst's fills, drops its socket while the worker goes on filling, reconnects with `?since=` the last
eventId it read, and ends with every trade of the burst exactly once, in eventId order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from django.db import connection

from broker import services as broker_services
from orders.models import Trade
from pools import services as pool_services
from tests.conftest import give_shares, make_customers, make_pools, make_ticker
from tests.integration.conftest import Stack, wait_until_quiet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

BURST = 40


async def _read(
    url: str, *, stop_after_fills: int | None, idle: float = 3.0, ready: asyncio.Event | None = None
) -> list[dict[str, Any]]:
    """Messages until `stop_after_fills` fills were read (then the socket is dropped), or until none came
    for `idle` seconds."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url) as socket:
        assert json.loads(await socket.recv())["type"] == "subscribed"
        if ready is not None:
            ready.set()  # joined: every order sent from now on streams to this socket
        while True:
            try:
                message = json.loads(await asyncio.wait_for(socket.recv(), idle))
            except TimeoutError:
                return messages
            messages.append(message)
            fills = sum(1 for seen in messages if seen["type"] == "fill")
            if stop_after_fills is not None and fills >= stop_after_fills:
                return messages  # the socket closes here, mid-burst


def _quiet() -> None:
    try:
        wait_until_quiet()
    finally:
        connection.close()  # this worker thread's own connection, or the test database stays in use


def test_a_client_resumes_mid_burst_without_a_gap_or_a_duplicate(stack: Stack) -> None:
    make_pools()
    make_customers()
    ticker = make_ticker("COIN", "256.62")
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN")
    token = broker_services.api_token_for_customer(customer_id="000002").key
    url = f"{stack.ws_url}/ws/fills/?token={token}"
    order = {"customerId": "000002", "ticker": "COIN", "type": "Limit", "timeInForce": "IOC", "quantity": 10}

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        subscribed = asyncio.Event()
        first = asyncio.create_task(_read(url, stop_after_fills=BURST // 4, ready=subscribed))
        await subscribed.wait()
        async with httpx.AsyncClient(base_url=stack.base_url, headers={"Authorization": f"Token {token}"}) as http:
            for number in range(BURST):  # a marketable burst: buys and sells in turn
                side = (
                    {"direction": "Buy", "price": "262.00"}
                    if number % 2 == 0
                    else {"direction": "Sell", "price": "251.00"}
                )
                response = await http.post("/api/orders", json={**order, **side})
                assert response.status_code == 201, response.text
        before = await first
        await asyncio.to_thread(_quiet)  # the rest of the burst fills while nobody listens
        last = max(message["eventId"] for message in before if "eventId" in message)
        after = await _read(f"{url}&since={last}", stop_after_fills=None)
        return before, after

    before, after = asyncio.run(scenario())

    stream = [message for message in before + after if message["type"] in ("fill", "order", "settled")]
    ids = [message["eventId"] for message in stream]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))  # no event twice across the seam
    fills = [message["trade"]["tradeId"] for message in stream if message["type"] == "fill"]
    assert len(fills) == len(set(fills))
    expected = {
        str(trade_id)
        for trade_id in Trade.objects.filter(customer__customer_id="000002").values_list("trade_id", flat=True)
    }
    assert set(fills) == expected
    assert len([message for message in before if message["type"] == "fill"]) < len(fills)  # it did drop mid-burst
