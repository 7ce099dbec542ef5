"""The throttle's count: one Redis round trip per request, in the cache's key, never outliving its window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from broker.api.throttling import throttle_cache
from tests.conftest import Market, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counts() -> Iterator[None]:
    throttle_cache().clear()
    yield
    throttle_cache().clear()


def test_the_count_expires_with_its_window(market: Market, settings: Any) -> None:
    # given a rate per minute
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "orders": "5/min"}
    client = client_for("000002")

    # when three orders are entered (bad ones: the throttle counts requests)
    statuses = [
        client.post("/api/orders", data=json.dumps({}), content_type="application/json").status_code for _ in range(3)
    ]

    # then the count is 3, under the cache's key, and the key goes within the window and one second
    assert statuses == [400] * 3
    other_process = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"], decode_responses=True)
    [key] = [str(key) for key in other_process.keys("*throttle:orders:*")]
    name = key.split(":", 2)[2]  # without the cache's prefix and version
    assert key == throttle_cache().make_key(name)
    assert other_process.get(key) == "3"
    assert 0 < other_process.ttl(key) <= 61
    assert throttle_cache().get(name) == 3
    other_process.close()
