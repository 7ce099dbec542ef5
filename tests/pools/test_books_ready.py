"""A process learns at its warm-up which tickers have a book on every venue, in one query, instead of
asking once per ticker in the first order it routes (pools.selectors.books_ready_load)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pools import selectors as pool_selectors
from pools import services as pool_services
from tests.conftest import Market, make_ticker

# Committed: venues changed inside a transaction still open are never cached (pools.selectors._current).
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_warm_up_marks_every_ticker_with_all_its_books_ready_in_one_query(market: Market) -> None:
    # given a ticker with a book on every venue, one with none, and a process that has seen neither
    booked = make_ticker("MSFT", "400.00")
    pool_services.books_ensure(ticker_id=booked.pk)
    bare = make_ticker("NVDA", "100.00")
    pool_selectors.pools_active()  # the venues themselves are cached already (their own warm-up step)
    pool_selectors._current().books_ready.clear()

    # when the warm-up loads what is ready
    with CaptureQueriesContext(connection) as queries:
        pool_selectors.books_ready_load()
    assert len([query for query in queries.captured_queries if "pools_book" in query["sql"]]) == 1

    # then the booked tickers need no query when routed; the bare one still gets its books made
    assert pool_selectors.books_known_ready(ticker_id=booked.pk)
    assert pool_selectors.books_known_ready(ticker_id=market["ticker"].pk)
    assert not pool_selectors.books_known_ready(ticker_id=bare.pk)
    with CaptureQueriesContext(connection) as queries:
        pool_services.books_ensure(ticker_id=booked.pk)
    assert not [query for query in queries.captured_queries if "pools_book" in query["sql"]]
    pool_services.books_ensure(ticker_id=bare.pk)
    assert pool_selectors.books_known_ready(ticker_id=bare.pk)
