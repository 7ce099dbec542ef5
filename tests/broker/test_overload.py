"""A saturated server answers 503 with Retry-After, never 500 (the 200-800 orders/s steps of the bench).

Under a backlog a request can wait for a database connection longer than the pool's timeout; Django
then raises OperationalError caused by psycopg_pool's PoolTimeout. The error here is the real one: a real
pool of one connection, taken, asked again, through Django's own database-error wrapper.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test import RequestFactory
from psycopg_pool import ConnectionPool

from broker.api.exceptions import exception_handler
from broker.api.views import server_error

pytestmark = pytest.mark.django_db


def _pool_timeout() -> OperationalError:
    """The OperationalError Django raises when its pool has no connection to give in time."""
    params: dict[str, Any] = connection.get_connection_params()
    conninfo = " ".join(f"{key}={value}" for key, value in params.items() if key in ("dbname", "user", "host", "port"))
    pool = ConnectionPool(conninfo, min_size=1, max_size=1, open=True)
    try:
        held = pool.getconn()
        try:
            with connection.wrap_database_errors:
                pool.getconn(timeout=0.05)
        except OperationalError as error:
            return error
        finally:
            pool.putconn(held)
    finally:
        pool.close()
    raise AssertionError("the pool gave a second connection")


def test_an_api_request_that_got_no_database_connection_is_a_503_with_retry_after() -> None:
    error = _pool_timeout()

    response = exception_handler(error, {})

    assert response is not None
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.data == {"detail": "The server is busy; try again in a moment."}


@pytest.mark.parametrize("path", ["/api/orders", "/orders/ticket/"])
def test_a_request_outside_drf_that_got_no_database_connection_is_a_503_not_the_500_page(path: str) -> None:
    # as Django calls handler500: inside the handling of the uncaught exception
    request = RequestFactory().get(path)
    try:
        raise _pool_timeout()
    except OperationalError:
        response = server_error(request)

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    body = response.content.decode()
    assert "busy" in (json.loads(body)["detail"] if path.startswith("/api/") else body)


def test_any_other_uncaught_error_is_still_the_500_it_is() -> None:
    request = RequestFactory().get("/api/orders")
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        response = server_error(request)

    assert response.status_code == 500
