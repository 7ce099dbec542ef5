"""Issue 10, item 4: matching, settlement, cancels and trade corrections of the same orders run at the same
time on the real stack without a single deadlock, and no cancel or correction answers 5xx.

Every write path takes its row locks in the one global order documented in orders/services.py; a
deadlock between them would show in `pg_stat_database.deadlocks`, in the worker's log (a task retried
on "deadlock detected") and as a 500 from the cancel or correction endpoint.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from decimal import Decimal

import httpx
import pytest
from django.db import connection

from broker import services as broker_services
from orders.models import Trade
from pools import services as pool_services
from settlement.models import Posting, PostingPurpose
from tests.conftest import give_shares, make_customers, make_pools, make_ticker
from tests.integration.conftest import Stack, wait_until_quiet
from tests.invariants import all_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

REFERENCE = Decimal("256.62")
# Customers with the deepest pockets, so buys are accepted; few of them, so their orders meet each other.
CUSTOMERS = ["000002", "000004", "000005", "000006"]
DURATION = 25.0  # seconds of traffic; every thread also stops after MAX_REQUESTS requests
MAX_REQUESTS = 400


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        # Statistics are cached per transaction; a fresh snapshot sees what other backends reported.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        (value,) = cursor.fetchone()
    return int(value)


def _order_body(rng: random.Random, customer_id: str, reference: str) -> dict[str, object]:
    """Limits within a cent or two of one price, on both sides, inside the providers' spread: the four
    customers' orders rest and cross each other (makers hit again and again while their fills settle)."""
    return {
        "customerId": customer_id,
        "direction": rng.choice(["Buy", "Sell"]),
        "ticker": "COIN",
        "type": "Limit",
        "quantity": rng.choice([100, 100, 200, 300, 600]),
        "price": str(REFERENCE + Decimal(rng.randint(-1, 1)) / 100),
        "timeInForce": rng.choice(["Day", "Day", "Day", "IOC"]),
        "clientOrderId": reference,
    }


def test_settling_matching_cancelling_and_correcting_the_same_orders_never_deadlocks(stack: Stack) -> None:
    # given four funded customers holding COIN, liquidity on every venue, and a staff token
    make_pools()
    make_customers()
    ticker = make_ticker("COIN", str(REFERENCE))
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN", 50_000)
    tokens = {
        customer_id: broker_services.api_token_for_customer(customer_id=customer_id).key for customer_id in CUSTOMERS
    }
    staff = broker_services.api_token_for_staff(username="deadlock-desk").key
    log_start = (stack.log_dir / "worker.log").stat().st_size
    deadlocks_before = _deadlocks()

    statuses: Counter[tuple[str, int]] = Counter()
    placed: dict[str, list[str]] = {customer_id: [] for customer_id in CUSTOMERS}
    lock = threading.Lock()
    deadline = time.monotonic() + DURATION

    def record(what: str, response: httpx.Response) -> None:
        with lock:
            statuses[(what, response.status_code)] += 1

    def placer(customer_id: str) -> None:
        rng = random.Random(f"deadlocks:place:{customer_id}")
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {tokens[customer_id]}"}) as http:
            for number in range(MAX_REQUESTS):
                if time.monotonic() > deadline:
                    return
                response = http.post(
                    "/api/orders", json=_order_body(rng, customer_id, f"d-{customer_id}-{number}"), timeout=60
                )
                record("place", response)
                if response.status_code == 201:
                    with lock:
                        placed[customer_id].append(response.json()["orderId"])

    def canceller(customer_id: str) -> None:
        # Cancels the customer's most recent orders: resting makers that matching and settlement hold too.
        rng = random.Random(f"deadlocks:cancel:{customer_id}")
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {tokens[customer_id]}"}) as http:
            for _ in range(MAX_REQUESTS):
                if time.monotonic() > deadline:
                    return
                with lock:
                    recent = placed[customer_id][-8:]
                if not recent:
                    time.sleep(0.05)
                    continue
                record("cancel", http.post(f"/api/orders/{rng.choice(recent)}/cancel", timeout=60))
                time.sleep(rng.random() * 0.2)

    def corrector(number: int) -> None:
        # Amends or busts the newest trades: their orders just finished and their settlement is running.
        rng = random.Random(f"deadlocks:correct:{number}")
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {staff}"}) as http:
            for _ in range(MAX_REQUESTS // 2):
                if time.monotonic() > deadline:
                    return
                listing = http.get("/api/trades", params={"pageSize": 12}, timeout=60)
                record("list", listing)
                trades = listing.json()["results"] if listing.status_code == 200 else []
                if not trades:
                    time.sleep(0.05)
                    continue
                trade = rng.choice(trades)
                kind = rng.random()
                if kind < 0.2:
                    response = http.post(
                        f"/api/trades/{trade['tradeId']}/bust", json={"reason": "test bust"}, timeout=60
                    )
                    record("bust", response)
                elif kind < 0.6 and trade["quantity"] > 1:
                    body = {"reason": "short fill", "quantity": trade["quantity"] - 1}
                    record("amend", http.post(f"/api/trades/{trade['tradeId']}/amend", json=body, timeout=60))
                else:
                    body = {"reason": "price fix", "price": str(Decimal(trade["price"]) - Decimal("0.01"))}
                    record("amend", http.post(f"/api/trades/{trade['tradeId']}/amend", json=body, timeout=60))

    threads = [threading.Thread(target=placer, args=(customer_id,)) for customer_id in CUSTOMERS]
    threads += [threading.Thread(target=canceller, args=(customer_id,)) for customer_id in CUSTOMERS]
    threads += [threading.Thread(target=corrector, args=(number,)) for number in range(3)]

    # when they place crossing orders, cancel the resting ones and correct fresh trades, all at once,
    # while the worker matches and settles (T+0) the same orders
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DURATION + 300)
    assert not any(thread.is_alive() for thread in threads)
    wait_until_quiet(timeout=180)
    # A backend reports its statistics when idle, at most PGSTAT_IDLE_INTERVAL (10 s) later; the pooled
    # connections of the worker and the web server stay open, so wait that long before reading them.
    time.sleep(11)

    # then every path really ran on the same rows
    assert statuses[("place", 201)] > 0
    assert statuses[("cancel", 200)] > 0
    assert statuses[("amend", 200)] + statuses[("bust", 200)] > 0
    assert Trade.objects.filter(settlement_date__isnull=False).exists()
    assert (
        Posting.objects.filter(purpose=PostingPurpose.TRADE_REVERSAL).exists()
        or Trade.objects.filter(version__gt=1).exists()
    )
    # and Postgres broke no deadlock, the worker retried nothing for one, and no request answered 5xx
    with (stack.log_dir / "worker.log").open("rb") as log:
        log.seek(log_start)
        worker_log = log.read().decode(errors="replace")
    server_errors = {key: count for key, count in statuses.items() if key[1] >= 500}
    outcome = (_deadlocks() - deadlocks_before, worker_log.count("deadlock detected"), server_errors)
    assert outcome == (0, 0, {}), f"statuses: {dict(statuses)}"
    # and the invariants hold: no over-fill, conservation, books agree with the broker
    assert all_violations() == []
