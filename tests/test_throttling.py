"""API throttles: per user (token) and scope, counted in Redis, 429 with Retry-After past the rate;
generous by default."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from broker.api.throttling import throttle_cache
from tests.conftest import Market, client_for

pytestmark = pytest.mark.django_db

SMALL_RATES = {"orders": "5/min", "market-data": "3/min", "default": "7/min"}


@pytest.fixture(autouse=True)
def fresh_counts() -> Iterator[None]:
    """Counts live in Redis across tests and runs: each test starts from none."""
    throttle_cache().clear()
    yield
    throttle_cache().clear()


def _assert_throttled(response: object, scope: str) -> None:
    assert response.status_code == 429, response.content  # type: ignore[attr-defined]
    retry_after = int(response["Retry-After"])  # type: ignore[index]
    assert 1 <= retry_after <= 60
    body = response.json()  # type: ignore[attr-defined]
    assert body["scope"] == scope
    assert body["retryAfter"] == retry_after
    assert scope in body["detail"]
    assert "retry in" in body["detail"]


def test_each_scope_answers_429_past_its_rate_per_token(market: Market, settings: Any) -> None:
    # given small rates, and two clients with their own tokens
    settings.API_THROTTLE_RATES = SMALL_RATES
    first, second = client_for("000002"), client_for("000001")

    # when the first sends five order entries (bad ones: a throttle counts requests, not orders)
    answers = [first.post("/api/orders", {}, format="json").status_code for _ in range(5)]
    sixth = first.post("/api/orders", {}, format="json")

    # then the five are answered and the sixth is refused with when to retry
    assert answers == [400] * 5
    _assert_throttled(sixth, "orders")
    # and cancelling is order entry's scope too
    _assert_throttled(first.post("/api/orders/00000000-0000-0000-0000-000000000000/cancel"), "orders")
    # and the other token has its own count
    assert second.post("/api/orders", {}, format="json").status_code == 400
    # and reads count against the default scope, not order entry's
    reads = [first.get("/api/orders").status_code for _ in range(7)]
    assert reads == [200] * 7
    _assert_throttled(first.get("/api/tickers"), "default")
    # and market-data jobs have their own
    jobs = [first.post("/api/market-data", {"tickers": ["COIN"]}, format="json").status_code for _ in range(3)]
    assert jobs == [202] * 3
    _assert_throttled(first.post("/api/market-data", {"tickers": ["COIN"]}, format="json"), "market-data")
    # and an anonymous request is still told to authenticate
    assert APIClient().post("/api/orders", {}, format="json").status_code == 401


def test_counts_are_in_redis_where_every_web_process_sees_them(market: Market, settings: Any) -> None:
    # given small rates
    settings.API_THROTTLE_RATES = SMALL_RATES
    client = client_for("000002")

    # when a client spends part of its order-entry budget
    for _ in range(3):
        client.post("/api/orders", {}, format="json")

    # then the count is in the Redis database the settings give the cache, read by another connection
    location = settings.CACHES["default"]["LOCATION"]
    assert settings.CACHES["default"]["BACKEND"] == "broker.cache.RedisCache"
    other_process = redis.Redis.from_url(location)
    keys = other_process.keys("*throttle:orders:*")
    assert len(keys) == 1
    assert other_process.get(keys[0]) == b"3"
    other_process.close()


def test_default_rates_do_not_throttle_a_burst_of_orders(market: Market) -> None:
    # given the default rates (the benchmark sends hundreds of orders a second from a few tokens)
    assert django_settings.API_THROTTLE_RATES["orders"] == "60000/min"
    client = client_for("000002")

    # when one token sends a burst of 300 order entries and 300 reads
    statuses = {client.post("/api/orders", {}, format="json").status_code for _ in range(300)}
    statuses |= {client.get("/api/tickers").status_code for _ in range(300)}

    # then none is throttled
    assert statuses == {400, 200}


def test_health_is_not_throttled_for_monitors(settings: Any) -> None:
    # given tiny rates
    settings.API_THROTTLE_RATES = {"orders": "1/min", "market-data": "1/min", "default": "1/min"}

    # when a monitor without a token polls the health endpoint
    statuses = {APIClient().get("/api/health").status_code for _ in range(5)}

    # then it is never refused for its rate
    assert 429 not in statuses
