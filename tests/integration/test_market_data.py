"""Market-data jobs on the real worker: a Celery group per job, a chord callback, Yahoo served locally."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from broker import services as broker_services
from broker.marketdata import services as marketdata_services
from broker.models import MarketDataFailure, PriceBar, Ticker
from pools import services as pool_services
from tests.conftest import make_customers, make_pools
from tests.integration.conftest import Stack, wait_until_quiet
from tests.marketdata.yahoo_server import chart_payload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def _job_states(client: httpx.Client, job_id: str, timeout: float = 60) -> tuple[list[str], dict[str, Any]]:
    """Every state the job was seen in, polling until it leaves `pending`, and its final body."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/market-data/{job_id}").json()
        if not seen or seen[-1] != body["state"]:
            seen.append(body["state"])
        if body["state"] != "pending":
            return seen, body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still pending after {timeout}s")


def test_a_job_fetches_its_tickers_in_parallel_and_ends_partial_with_named_failures(stack: Stack) -> None:
    token = broker_services.api_token_for_staff(username="desk").key
    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {token}"}) as client:
        response = client.post("/api/market-data", json={"tickers": ["AAPL", "MSFT", "ARMK", "ZZZZ"]})
        assert response.status_code == 202
        assert response.json()["state"] == "pending"

        seen, job = _job_states(client, response.json()["jobId"])

    assert seen[0] == "pending"
    assert seen[-1] == "partial"
    failed = {(failure["ticker"], failure["what"], failure["kind"]) for failure in job["failures"]}
    # Recordings exist for AAPL (quote and history), MSFT (history) and ARMK (quote) only.
    assert failed == {
        ("MSFT", "quote", "unknown_symbol"),
        ("ARMK", "history", "unknown_symbol"),
        ("ZZZZ", "quote", "unknown_symbol"),
        ("ZZZZ", "history", "unknown_symbol"),
    }
    # The chord callback received what each parallel fetch stored.
    assert job["results"]["AAPL"]["history"] == "253 bars 2020-01-02..2020-12-31"
    assert job["results"]["MSFT"]["history"] == "252 bars 2021-02-01..2022-01-28"
    assert job["results"]["ARMK"]["quote"].startswith("last price ")
    assert PriceBar.objects.filter(ticker__symbol="MSFT").count() == len(
        chart_payload("MSFT")["chart"]["result"][0]["timestamp"]
    )
    assert Ticker.objects.get(symbol="ARMK").active
    assert not Ticker.objects.get(symbol="ZZZZ").active

    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {token}"}) as client:
        again = client.post("/api/market-data", json={"tickers": ["AAPL"]}).json()
        seen, job = _job_states(client, again["jobId"])
    assert seen == ["pending", "done"] or seen == ["done"]
    assert job["failures"] == []


def test_the_tickers_of_a_job_are_fetched_at_the_same_time(stack: Stack) -> None:
    # given a Yahoo that takes a moment over every answer
    stack.yahoo.mode, stack.yahoo.delay = "slow", 0.5
    stack.yahoo.max_in_flight = 0
    token = broker_services.api_token_for_staff(username="desk").key
    try:
        # when one job asks for two tickers
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {token}"}) as client:
            response = client.post("/api/market-data", json={"tickers": ["AAPL", "MSFT"]})
            seen, job = _job_states(client, response.json()["jobId"])
    finally:
        stack.yahoo.mode = "ok"

    # then both workers' fetches were in flight together (the group ran in parallel), and the job finished
    assert stack.yahoo.max_in_flight >= 2
    assert seen[-1] == "partial"  # MSFT's quote has no recording
    assert job["results"]["AAPL"]["history"] == "253 bars 2020-01-02..2020-12-31"
    assert job["results"]["MSFT"]["history"] == "252 bars 2021-02-01..2022-01-28"


def test_while_yahoo_refuses_orders_go_on_and_a_later_job_succeeds(stack: Stack) -> None:
    make_pools()
    make_customers()
    marketdata_services.snapshot_load(symbols=["MSFT"])
    Ticker.objects.filter(symbol="MSFT").update(quote_fetched_at=None)  # missing data: orders ask for it
    pool_services.books_ensure(ticker_id=Ticker.objects.get(symbol="MSFT").pk)
    client_token = broker_services.api_token_for_customer(customer_id="000002").key
    staff_token = broker_services.api_token_for_staff(username="desk").key

    stack.yahoo.stop()
    try:
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {client_token}"}) as client:
            order = client.post(
                "/api/orders",
                json={"customerId": "000002", "direction": "Buy", "ticker": "MSFT", "type": "Limit",
                      "quantity": 500, "price": "420.00"},
            )  # fmt: skip
            assert order.status_code == 201
            wait_until_quiet()
            assert client.get(f"/api/orders/{order.json()['orderId']}").json()["status"] == "Filled"

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failure = MarketDataFailure.objects.filter(symbol="MSFT", job__reason="order").first()
            if failure is not None and failure.job is not None and failure.job.state != "pending":
                break
            time.sleep(0.2)
        assert failure is not None
        assert failure.kind == "network"
        assert failure.attempts == 4  # MARKET_DATA_MAX_ATTEMPTS, with backoff between them
        assert Ticker.objects.get(symbol="MSFT").stale
    finally:
        stack.yahoo.start()

    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Token {staff_token}"}) as client:
        retry = client.post("/api/market-data", json={"tickers": ["MSFT"]}).json()
        _, job = _job_states(client, retry["jobId"])
    assert job["results"]["MSFT"]["history"].endswith("bars 2021-02-01..2022-01-28")
    failure.refresh_from_db()
    assert failure.resolved_at is not None  # the history part recovered
