"""The web server keeps an idle keep-alive connection open longer than API clients keep theirs.

gunicorn's default (2 s) closed an idle connection while httpx's pool (5 s) still meant to reuse it; a
request sent just as the server closed it failed with a read error (seen once at 100 orders/s).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

IDLE_SECONDS = 3  # past gunicorn's default keep-alive (2 s), within httpx's pool expiry (5 s)


def _local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_a_connection_idle_for_3_seconds_is_still_open_and_reused(stack: Stack) -> None:
    # given a client that made one request and kept its connection
    with httpx.Client(base_url=stack.base_url) as client:
        first = client.get("/api/health")
        assert first.status_code == 200
        first_port = _local_port(first)

        # when it sends the next one after 3 s of silence
        time.sleep(IDLE_SECONDS)
        second = client.get("/api/health")

        # then it went over the same connection: the server had not closed it
        assert second.status_code == 200
        assert _local_port(second) == first_port
