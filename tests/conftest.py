"""Shared fixtures: embedded Redis for the session, demo reference data, and real API clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import TypedDict

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from broker import embedded
from broker import services as broker_services
from broker.models import Customer, Ticker
from orders.management.commands.seed_demo import CUSTOMERS, POOLS
from orders.models import Order
from pools import services as pool_services
from pools.models import Pool
from settlement import services as settlement_services
from tests.stack import quiet_after_each_test, stack
from tests.streams import sequencer

# The real-stack fixtures (one web tier + Celery worker per session), shared by tests/integration and
# tests/browser; defined once here so both directories get the same session-scoped stack.
__all__ = ["quiet_after_each_test", "sequencer", "stack"]


@pytest.fixture(scope="session", autouse=True)
def redis_server() -> Iterator[str]:
    """The Redis the tests' Celery broker and channel layer use: embedded unless REDIS_URL is set."""
    started = False
    if not os.environ.get("REDIS_URL"):
        started = embedded.start_redis(settings.EMBEDDED)
    # Tests count the messages they queue: start from empty queues, whatever an earlier session left.
    from broker.celery import app

    app.control.purge()
    yield settings.REDIS_URL
    if started:
        embedded.stop_redis(settings.EMBEDDED)


def make_pools() -> dict[str, Pool]:
    return {
        code: pool_services.pool_seed(
            name=code, kind=kind, description=description, maker_fee=Decimal(maker), taker_fee=Decimal(taker)
        )
        for code, description, kind, maker, taker in POOLS
    }


def make_customers() -> dict[str, Customer]:
    customers = {
        customer_id: broker_services.customer_upsert(
            customer_id=customer_id, name=name, email=f"{customer_id}@example.com", initial_funds=Decimal(funds)
        )
        for customer_id, name, funds in CUSTOMERS
    }
    for customer in customers.values():
        settlement_services.customer_fund_initial(customer=customer)
    return customers


def give_shares(symbol: str = "COIN", quantity: int = 5000) -> None:
    """An opening position in `symbol` for every demo customer (transferred in through the ledger)."""
    for customer in Customer.objects.all():
        settlement_services.customer_transfer_in(
            customer=customer,
            symbol=symbol,
            quantity=quantity,
            unit_cost=Decimal("250.00"),
            reference=f"test:{customer.customer_id}:{symbol}",
        )


def make_ticker(symbol: str = "COIN", price: str = "256.62") -> Ticker:
    return broker_services.ticker_upsert(
        symbol=symbol, name=symbol, exchange="NASDAQ", reference_price=Decimal(price), reference_date=date(2024, 3, 8)
    )


class Market(TypedDict):
    pools: dict[str, Pool]
    customers: dict[str, Customer]
    ticker: Ticker


@pytest.fixture
def market(db: None) -> Market:
    """Venues, the demo customers and COIN with seeded liquidity on every venue."""
    pools = make_pools()
    customers = make_customers()
    ticker = make_ticker()
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN")
    return {"pools": pools, "customers": customers, "ticker": ticker}


def client_for(customer_id: str) -> APIClient:
    token = broker_services.api_token_for_customer(customer_id=customer_id)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def staff_client(username: str = "desk") -> APIClient:
    token = broker_services.api_token_for_staff(username=username)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def drive(order: Order, *, rounds: int = 20) -> None:
    """Do synchronously what the workers do: route the order, then send every in-flight child.

    In a non-transactional test the on-commit task enqueues never fire, so this stands in for them
    (the real worker path is covered by tests/integration).
    """
    from orders import services
    from orders.selectors import children_in_flight

    services.order_route(order_id=order.pk)
    for _ in range(rounds):
        in_flight = list(children_in_flight(parent=order).values_list("pk", "attempt"))
        if not in_flight:
            break
        for child_id, attempt in in_flight:
            services.child_match(child_id=child_id, attempt=attempt)
    order.refresh_from_db()


def place(customer_id: str = "000002", **fields: object) -> Order:
    """Validate and place an order through the same service the API uses."""
    from broker.selectors import ticker_by_symbol
    from orders import services
    from orders.validation import parse_order_request

    body = {"customerId": customer_id, "direction": "Buy", "ticker": "COIN", "type": "Limit", "quantity": 100}
    body.update(fields)
    request = parse_order_request(body)
    customer = Customer.objects.get(customer_id=customer_id)
    return services.order_place(
        request=request, customer=customer, ticker=ticker_by_symbol(symbol=request.ticker), actor=None
    ).order


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that start a real worker last.

    Once the session's worker is up it consumes every task any test enqueues; a transactional test
    that runs after it could find the worker still busy with the previous test's rows while the
    database is being flushed.
    """
    items.sort(key=lambda item: item.get_closest_marker("stack") is not None)
