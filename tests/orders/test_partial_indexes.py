"""The order flow's hot claims use their partial indexes in the generic plan of a prepared statement.

psycopg prepares what a connection runs again (broker/settings.py), and Postgres then plans it once
without its values: a partial index whose condition names a bound value can no longer be proven, and
the plan reads an index of every row instead (a ticker's or a venue's whole day). The claims write
those values as literals (broker.sql.literal_in); these tests force generic plans and count the scans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, transaction

from orders.services import matching, routing
from tests.conftest import Market, place

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def generic_plans() -> Iterator[None]:
    """Every statement of this connection planned without its values, and never by a sequential scan
    (on a test's few rows it would be cheaper than any index)."""
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute("SET enable_seqscan = off")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET plan_cache_mode")
            cursor.execute("RESET enable_seqscan")


def _scans(index: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", [index])
        (scans,) = cursor.fetchone()
    return int(scans)


def _scans_during(index: str, run: Callable[[], Any], times: int = 3) -> int:
    before = _scans(index)
    for _ in range(times):
        with transaction.atomic():
            run()
    return _scans(index) - before


def test_the_route_claim_reads_the_new_orders_index(market: Market, generic_plans: None) -> None:
    ticker_id = place(price="256.00").ticker_id
    claim = routing._CLAIM
    assert _scans_during("order_new", lambda: claim.objects((None, routing.ROUTE_BATCH), ticker_id=ticker_id)) == 3


def test_the_match_batch_reads_the_waiting_children_index(market: Market, generic_plans: None) -> None:
    order = place(price="250.00")  # below the market: it rests
    routing.orders_route(order_id=order.pk, ticker_id=order.ticker_id, match_now=False)
    child_pool = order.children.values_list("pool_id", flat=True)[0]
    batch = matching._BATCH

    def read() -> Any:
        return batch.objects((None, matching.MATCH_BATCH), pool_id=child_pool, ticker_id=order.ticker_id)

    assert _scans_during("child_waiting", read) == 3
