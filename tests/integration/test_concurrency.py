"""Many concurrent clients crossing on one ticker: no over-fill, every trade has its venue execution."""

from __future__ import annotations

import random
import threading
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from broker import services as broker_services
from orders.models import Order, OrderStatus, Trade
from pools import services as pool_services
from pools.models import Execution
from tests.conftest import give_shares, make_customers, make_pools, make_ticker
from tests.integration.conftest import Stack, wait_until_quiet
from tests.invariants import all_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

CLIENTS = 8
ORDERS_PER_CLIENT = 64  # 512 orders in all
REFERENCE = Decimal("256.62")


def _orders_for(client: int) -> list[dict[str, object]]:
    """A reproducible mix that crosses a lot: limits either side of the reference, some Market and IOC."""
    rng = random.Random(f"concurrency:{client}")
    orders = []
    for number in range(ORDERS_PER_CLIENT):
        direction = rng.choice(["Buy", "Sell"])
        body: dict[str, object] = {
            "customerId": f"{client + 1:06d}",
            "direction": direction,
            "ticker": "COIN",
            "quantity": rng.randint(1, 12) * 50,
            "clientOrderId": f"c{client}-{number}",
        }
        kind = rng.random()
        if kind < 0.1:
            body["type"] = "Market"
        else:
            body["type"] = "Limit"
            offset = Decimal(rng.randint(-60, 60)) / 100  # within +-0.60 of the reference: both sides cross
            body["price"] = str(REFERENCE + offset)
            body["timeInForce"] = "IOC" if kind < 0.3 else "Day"
        orders.append(body)
    return orders


def test_concurrent_crossing_orders_never_overfill(stack: Stack) -> None:
    # given one ticker, its venues, and eight customers with API tokens
    make_pools()
    make_customers()
    ticker = make_ticker("COIN", str(REFERENCE))
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN", 50_000)
    tokens = [broker_services.api_token_for_customer(customer_id=f"{n + 1:06d}").key for n in range(CLIENTS)]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(number: int) -> None:
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {tokens[number]}"}) as http:
            barrier.wait()
            for body in _orders_for(number):
                code = http.post("/api/orders", json=body, timeout=30).status_code
                with lock:
                    statuses[code] += 1

    # when eight clients send 512 orders at once
    threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until_quiet(timeout=180)

    # then every order was accepted, reached a final or resting state, and nothing is over-filled
    assert statuses == Counter({201: CLIENTS * ORDERS_PER_CLIENT})
    assert Order.objects.count() == CLIENTS * ORDERS_PER_CLIENT
    assert not Order.objects.filter(status=OrderStatus.NEW).exists()
    # customers really traded with each other, not only with the simulated providers
    crossed = Execution.objects.filter(maker__client_ref__isnull=False).count()
    assert crossed > 0
    assert Trade.objects.count() > crossed
    assert all_violations() == []
