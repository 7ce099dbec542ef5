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


def _book_history(ticker_id: int, rows: int = 3000) -> None:
    """Give each of the ticker's books a day of finished orders (as a venue keeps them), and statistics
    that know it: with a handful of rows either index would do, and which one the plan takes would
    depend on what earlier tests left in the statistics."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pools_bookorder (book_id, owner, client_ref, side, price, quantity, remaining,"
            " time_in_force, sequence, status, created_at, updated_at)"
            " SELECT b.id, 'Liquidity', NULL, 'Sell', 300, 100, 0, 'Day', 1000000 + g, 'Filled', now(), now()"
            " FROM pools_book b, generate_series(1, %s) g WHERE b.ticker_id = %s",
            [rows, ticker_id],
        )
        cursor.execute("ANALYZE pools_bookorder")


def test_a_book_session_loads_its_resting_orders_through_the_open_orders_index(
    market: Market, generic_plans: None
) -> None:
    from pools import services as pool_services
    from pools.models import Book

    book = Book.objects.filter(ticker=market["ticker"]).first()
    assert book is not None
    _book_history(market["ticker"].pk)
    resting = pool_services._RESTING
    assert _scans_during("bookorder_open_by_book", lambda: resting.rows(book_id=book.pk)) == 3


def test_the_lit_depth_reads_each_book_s_open_orders_through_their_index(market: Market, generic_plans: None) -> None:
    from pools import selectors as pool_selectors

    ticker_id = market["ticker"].pk
    _book_history(ticker_id)

    def read() -> Any:
        return pool_selectors.lit_depth(ticker_id=ticker_id, side="Buy", limit=None)

    # one scan per lit book of the ticker at most, through the partial index, never the foreign key's
    before = _scans("pools_bookorder_book_id_6c2c8aac")
    assert _scans_during("bookorder_open_by_book", read) >= 3
    assert _scans("pools_bookorder_book_id_6c2c8aac") == before


def test_the_match_batch_finds_waiting_children_without_walking_the_ticker_s_orders(
    market: Market, generic_plans: None
) -> None:
    # given a ticker with many orders of the day, one of them waiting at a venue
    for _ in range(5):
        routing.orders_route(order_id=place(price="250.00").pk, match_now=False)
    order = place(price="250.00")
    routing.orders_route(order_id=order.pk, ticker_id=order.ticker_id, match_now=False)
    child = order.children.get()
    assert child.ticker_id == order.ticker_id
    batch = matching._BATCH

    def read() -> Any:
        return batch.objects((None, matching.MATCH_BATCH), pool_id=child.pool_id, ticker_id=order.ticker_id)

    # when the book's batch reads its waiting children, then it goes through the waiting children's index
    # and never through the index of every order of the ticker
    before = _scans("orders_order_ticker_id_e8622370")
    assert _scans_during("child_waiting", read) == 3
    assert _scans("orders_order_ticker_id_e8622370") == before
