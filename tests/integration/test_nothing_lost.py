"""Invariant 6 (ARCHITECTURE.md): nothing is lost. Every accepted order reaches a final status or rests
visibly, even when a worker process dies mid-task or the Celery broker is down when the order is accepted.

Both run on the session's real stack (gunicorn/uvicorn + one Celery worker, prefork, concurrency 2, on the test
database and the test Redis); nothing of ours is mocked.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psutil
import pytest
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnreachable

from broker import services as broker_services
from broker.celery import app as celery_app
from orders import services, tasks
from orders.models import ChildOrder, Order, OrderStatus
from orders.selectors import flow_busy, settlement_pending
from pools import services as pool_services
from pools.models import Book
from reporting.models import RunStatus
from reporting.reconciliation import reconciliation_run
from tests.conftest import client_for, give_shares, make_customers, make_pools, make_ticker
from tests.integration.conftest import Stack, wait_until_quiet
from tests.invariants import all_violations, lost_order_violations
from tests.stack import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

TICKERS = {"COIN": Decimal("256.62"), "AAPL": Decimal("170.73")}
CLIENTS = 8


def _market() -> list[str]:
    make_pools()
    make_customers()
    for symbol, price in TICKERS.items():
        ticker = make_ticker(symbol, str(price))
        pool_services.books_ensure(ticker_id=ticker.pk)
        give_shares(symbol, 20_000)
    return [f"{number:06d}" for number in range(1, CLIENTS + 1)]


def _order(rng: random.Random, customer_id: str, reference: str) -> dict[str, object]:
    """A marketable order (Market, or a limit through the touch) or a Day limit far from it that rests."""
    symbol = rng.choice(list(TICKERS))
    price = TICKERS[symbol]
    direction = rng.choice(["Buy", "Sell"])
    body: dict[str, object] = {
        "customerId": customer_id,
        "ticker": symbol,
        "direction": direction,
        "quantity": rng.choice([50, 100, 200, 400, 1500, 2500]),
        "clientOrderId": reference,
    }
    kind = rng.random()
    if kind < 0.15:
        body["type"] = "Market"
    elif kind < 0.7:
        offset = Decimal(rng.randint(0, 80)) / 100  # through the touch: takes liquidity
        body.update(type="Limit", price=str(price + offset if direction == "Buy" else price - offset))
        body["timeInForce"] = rng.choice(["Day", "IOC"])
    else:
        offset = Decimal(rng.randint(300, 500)) / 100  # far from the market: rests
        body.update(type="Limit", price=str(price - offset if direction == "Buy" else price + offset))
        body["timeInForce"] = "Day"
    return body


def _tokens() -> list[str]:
    return [broker_services.api_token_for_customer(customer_id=f"{n + 1:06d}").key for n in range(CLIENTS)]


def _post_all(
    stack: Stack, tokens: list[str], batch: str, per_client: int, statuses: Counter[int]
) -> list[threading.Thread]:
    """Start CLIENTS threads, each posting `per_client` orders through the HTTP API."""
    lock = threading.Lock()

    def client(number: int) -> None:
        customer_id, token = f"{number + 1:06d}", tokens[number]
        rng = random.Random(f"nothing-lost:{batch}:{number}")
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {token}"}) as http:
            for index in range(per_client):
                body = _order(rng, customer_id, f"{batch}-{number}-{index}")
                code = http.post("/api/orders", json=body, timeout=30).status_code
                with lock:
                    statuses[code] += 1

    threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


def _pool_processes(stack: Stack) -> set[int]:
    """The worker's prefork pool: the live children of the worker's main process."""
    live = set()
    for child in psutil.Process(stack.worker.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                live.add(child.pid)
    return live


def _active(stack: Stack) -> dict[int, tuple[str, str]]:
    """Pool process id -> (task name, task id) of every task a pool process of our worker is running."""
    pool = _pool_processes(stack)
    replies = celery_app.control.inspect(timeout=2, limit=1).active() or {}  # one worker: its reply ends the wait
    return {
        task["worker_pid"]: (task["name"], task["id"])
        for tasks_ in replies.values()
        for task in tasks_
        if task.get("worker_pid") in pool
    }


def _both_matching(stack: Stack) -> dict[int, tuple[str, str]] | None:
    active = _active(stack)
    matching = ("orders.match_book", "orders.match_child")
    return active if len(active) == 2 and all(name in matching for name, _ in active.values()) else None


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _replaced(stack: Stack, killed: set[int]) -> set[int] | None:
    pool = _pool_processes(stack)
    return pool if len(pool) == 2 and not pool & killed else None


def _drain(timeout: float = 90) -> None:
    """wait_until_quiet, with what Celery beat does in production: `orders.sweep` and
    `orders.settle_due` every 5 s (the worker only re-drives what is older than SWEEP_AFTER_SECONDS)."""
    deadline = time.monotonic() + timeout
    next_beat = time.monotonic() + 5
    while flow_busy() or settlement_pending():
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not finish in time")
        if time.monotonic() >= next_beat:
            tasks.sweep.apply_async()
            tasks.settle_due.apply_async()
            next_beat += 5
        time.sleep(0.2)


def _log_since(stack: Stack, offset: int) -> str:
    with (stack.log_dir / "worker.log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def _assert_nothing_lost() -> None:
    assert not Order.objects.filter(status=OrderStatus.NEW).exists()
    assert lost_order_violations() == []
    assert all_violations() == []
    run = reconciliation_run(triggered_by="test")
    assert (run.status, run.breaks_found) == (RunStatus.CLEAN, 0), run.summary


def test_pool_processes_killed_mid_task_lose_no_order(stack: Stack) -> None:
    # given eight funded customers holding two tickers with liquidity on every venue
    _market()
    tokens = _tokens()
    log_start = (stack.log_dir / "worker.log").stat().st_size
    statuses: Counter[int] = Counter()
    mid_task: list[str] = []  # the id of the task each kill interrupted for sure (one may be hit twice)

    # when orders arrive while every venue book is locked, so each match task the pool starts is stuck
    # inside its transaction, and both pool processes are SIGKILLed there, three times over
    with transaction.atomic():
        books = list(Book.objects.select_for_update().order_by("pool_id", "ticker_id"))
        assert books
        first = _post_all(stack, tokens, "a", 12, statuses)
        for _ in range(3):
            busy = wait_for(functools.partial(_both_matching, stack), "both pool processes stuck in a match task")
            for pid, (_, task_id) in busy.items():
                _kill(pid)
                mid_task.append(task_id)
            wait_for(functools.partial(_replaced, stack, set(busy)), "the pool replaced its killed processes")
        for thread in first:
            thread.join()
    # and then, books released, more orders arrive while whichever pool process is busy is killed
    second = _post_all(stack, tokens, "b", 16, statuses)
    anywhere: list[str] = []  # the task each of these kills aimed at (it may have finished just before)
    deadline = time.monotonic() + 30
    while len(anywhere) < 6 and time.monotonic() < deadline:
        active = _active(stack)
        if not active and not any(thread.is_alive() for thread in second):
            # Nothing left to interrupt. A kill after a task's commit but before its after-commit sends
            # (say, a route whose children's match tasks were not all published) is not redelivered
            # work: the replayed task is a no-op, and only the sweeper sends what is missing (_drain).
            break
        if active:
            pid, (_, task_id) = random.choice(sorted(active.items()))
            with contextlib.suppress(ProcessLookupError):
                _kill(pid)
            anywhere.append(task_id)
            wait_for(functools.partial(_replaced, stack, {pid}), "the pool replaced its killed process")
        time.sleep(0.2)
    for thread in second:
        thread.join()
    _drain()

    # then every order was accepted and reached a final status or rests visibly on a venue book
    assert statuses == Counter({201: CLIENTS * (12 + 16)})
    assert Order.objects.count() == CLIENTS * (12 + 16)
    _assert_nothing_lost()
    final = set(Order.objects.values_list("status", flat=True))
    assert OrderStatus.FILLED in final
    assert final & {OrderStatus.ROUTED, OrderStatus.PARTIALLY_FILLED}
    # and the kills really interrupted tasks in flight, which Celery delivered again and completed:
    # acks_late keeps the message unacknowledged while it runs, task_reject_on_worker_lost requeues it
    log = _log_since(stack, log_start)
    assert len(mid_task) == 6
    assert log.count("Task handler raised error: WorkerLostError") >= len(mid_task)
    received = Counter(re.findall(r"Task [\w.]+\[([0-9a-f-]+)\] received", log))
    succeeded = set(re.findall(r"Task [\w.]+\[([0-9a-f-]+)\] succeeded", log))
    # each one delivered again (as often as it was killed)
    assert [task_id for task_id in mid_task if received[task_id] < 1 + mid_task.count(task_id)] == []
    assert [task_id for task_id in mid_task if task_id not in succeeded] == []  # and then run to the end
    assert stack.worker.poll() is None  # the worker itself lived on; only its pool processes died


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def broker_unreachable_for_publishing() -> Iterator[None]:
    """This process's Celery app publishes to a port nobody listens on; the worker keeps consuming.

    Celery publishes through `broker_write_url` and caches its connection and producer pools, which
    are reset both ways (what Celery itself does after a fork).
    """

    celery_app.conf["broker_write_url"] = f"redis://127.0.0.1:{_free_port()}/0"
    celery_app._after_fork()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        celery_app.conf["broker_write_url"] = None
        celery_app._after_fork()  # type: ignore[attr-defined]


def test_orders_accepted_while_the_broker_is_down_are_swept_to_their_venues(stack: Stack, settings: Any) -> None:
    # given customers, COIN and AAPL with liquidity, and orders of every kind
    customer_ids = _market()
    rng = random.Random("broker-down")
    bodies = [_order(rng, customer_id, f"down-{n}") for n, customer_id in enumerate(customer_ids * 3)]
    bodies.append({"customerId": "000004", "ticker": "COIN", "direction": "Buy", "type": "Limit",
                   "price": "257.00", "quantity": 300, "timeInForce": "FOK", "clientOrderId": "down-fok"})  # fmt: skip
    settings.SWEEP_AFTER_SECONDS = 0

    # when the broker cannot be reached while they are accepted (and some even routed)
    with broker_unreachable_for_publishing():
        with pytest.raises(BrokerUnreachable):
            tasks.route_order.apply_async(args=(0,))  # the outage is real for this process
        responses = [
            client_for(str(body["customerId"])).post("/api/orders", data=body, format="json") for body in bodies
        ]
        # then every order is accepted, 201 and never a 500, and waits New (unless pre-trade risk refused it)
        assert [response.status_code for response in responses] == [201] * len(bodies)
        waiting = [response.json()["status"] for response in responses].count(OrderStatus.NEW)
        assert {response.json()["status"] for response in responses} <= {OrderStatus.NEW, OrderStatus.REJECTED}
        assert waiting > len(bodies) // 2
        assert Order.objects.filter(status=OrderStatus.NEW).count() == waiting
        # the router runs where the broker is down, its books busy: the children are created but their
        # books' match tasks are not sent
        new = Order.objects.filter(status=OrderStatus.NEW).exclude(time_in_force="FOK")
        routed = list(new.order_by("pk").values_list("pk", flat=True)[:6])
        for order_id in routed:
            services.order_route(order_id=order_id, match_now=False)
        stuck_children = ChildOrder.objects.filter(parent_id__in=routed).count()
        assert stuck_children >= len(routed)
        # and the sweeper cannot send anything either while the broker is down
        with pytest.raises(BrokerUnreachable):
            services.orders_sweep()
    assert Order.objects.filter(status=OrderStatus.NEW).count() == waiting - len(routed)

    # when the broker is back, the sweeper re-sends exactly what was never sent
    swept = services.orders_sweep()
    assert swept == {"orders": waiting - len(routed), "children": stuck_children}
    wait_until_quiet(timeout=60)

    # then every order reached a final status or rests visibly, and every invariant holds
    _assert_nothing_lost()
    final = set(Order.objects.values_list("status", flat=True))
    assert OrderStatus.FILLED in final
    assert final & {OrderStatus.ROUTED, OrderStatus.PARTIALLY_FILLED}
