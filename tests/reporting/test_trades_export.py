"""The trades CSV export streams under ASGI: memory stays flat however many trades match.

Django's ASGI handler consumes a StreamingHttpResponse through `aiter(response)`; a synchronous
iterator there is first turned into a list (the whole file in memory). These tests consume the
response exactly that way and measure Python's allocation peak with tracemalloc (memory, not time).
"""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import AsyncClient

from orders import roles
from orders.models import Trade
from pools.models import Execution
from tests.conftest import Market, drive, place
from tests.staff import staff_user

pytestmark = pytest.mark.django_db

MANY_TRADES = 100_000
# Measured on this machine with 100k trades: the export gathered in memory (its synchronous iterator,
# which the ASGI handler reads whole into a list, as before the fix) peaks at about 21 MB of Python
# allocations; streamed by the async iterator, 500 trades at a time, at about 3.5 MB. The bound sits
# between the two, a factor of 2+ from each: the test fails if the rows are ever gathered again.
STREAMING_PEAK_BOUND = 8 * 1024 * 1024


def _copy_trades(*, like: Trade, copies: int) -> None:
    """`copies` more trades like `like`, each with its own venue execution (a trade is unique per
    execution and child), inserted set-based in two statements."""
    execution_columns = [
        str(field.column) for field in Execution._meta.concrete_fields if field.column not in ("id", "execution_id")
    ]
    trade_columns = [
        str(field.column)
        for field in Trade._meta.concrete_fields
        if field.column not in ("id", "trade_id", "execution_id")
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH copies AS (
                INSERT INTO {Execution._meta.db_table} (execution_id, {", ".join(execution_columns)})
                SELECT gen_random_uuid(), {", ".join(execution_columns)}
                FROM {Execution._meta.db_table}, generate_series(1, %s)
                WHERE id = %s
                RETURNING id
            )
            INSERT INTO {Trade._meta.db_table} (trade_id, execution_id, {", ".join(trade_columns)})
            SELECT gen_random_uuid(), copies.id, {", ".join("trade." + column for column in trade_columns)}
            FROM {Trade._meta.db_table} AS trade, copies
            WHERE trade.id = %s
            """,
            [copies, like.execution_id, like.pk],
        )


def _consume_like_asgi(response: StreamingHttpResponse) -> tuple[int, int, str]:
    """Read the response as Django's ASGI handler does (`aiter(response)`, part after part, nothing
    kept); return the allocation peak while doing so, the number of lines and the file's start.
    The test client closes the response at the end of its content."""

    async def consume() -> tuple[int, bytes]:
        lines, start = 0, b""
        async with aclosing(cast(AsyncGenerator[bytes, None], aiter(response))) as content:
            async for part in content:
                lines += part.count(b"\n")
                start += part[: max(0, 4096 - len(start))]
        return lines, start

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        lines, start = async_to_sync(consume)()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"ASGI export: {lines} lines, allocation peak {peak / 2**20:.1f} MB")
    return peak, lines, start.decode()


def _asgi_get(path: str, *, username: str, group: str) -> StreamingHttpResponse:
    # AsyncClient builds an ASGIRequest and runs the view as the ASGI handler does; async_to_sync
    # from this thread keeps the view's queries on this test's connection (its data is uncommitted).
    client = AsyncClient()
    client.force_login(staff_user(username, group))
    response = async_to_sync(client.get)(path)
    assert response.status_code == 200, response
    assert isinstance(response, StreamingHttpResponse)
    return response


def test_export_of_100k_trades_streams_under_asgi_in_flat_memory(market: Market) -> None:
    # given 100k trades of one customer
    drive(place("000002", quantity=300, price="260.00"))
    original = Trade.objects.filter(customer__customer_id="000002").order_by("id").first()
    assert original is not None
    _copy_trades(like=original, copies=MANY_TRADES - Trade.objects.count())
    assert Trade.objects.count() == MANY_TRADES
    # The copies' deferred foreign-key checks run at teardown (Django checks constraints after each
    # test), one query per row and key, planned by this connection while the tables were nearly empty:
    # in the suite's order that teardown took 4 minutes and more, alone 8 s. Statistics of what the
    # tables hold now make Postgres plan those checks again.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Execution._meta.db_table}, {Trade._meta.db_table}")

    # when a trader exports them through the ASGI path
    response = _asgi_get("/trades/export.csv?customer=000002", username="trader", group=roles.TRADER)
    peak, lines, first = _consume_like_asgi(response)

    # then every trade is in the file, in the API's shape
    assert lines == MANY_TRADES + 1
    header, row = list(csv.reader(io.StringIO(first)))[:2]
    assert header[:3] == ["customerId", "direction", "ticker"]
    assert row[0] == "000002"
    # and the file never sat in memory: the peak is a chunk's worth, not the file's
    assert peak < STREAMING_PEAK_BOUND, f"export peaked at {peak / 2**20:.1f} MB"


def test_asgi_export_keeps_the_filters_and_the_permission(market: Market) -> None:
    # given trades of one customer only
    drive(place("000002", quantity=300, price="260.00"))
    count = Trade.objects.filter(customer__customer_id="000002").count()
    assert count > 0

    # when the export asks for another customer, then for this one
    other = _asgi_get("/trades/export.csv?customer=000001", username="trader", group=roles.TRADER)
    mine = _asgi_get("/trades/export.csv?customer=000002", username="trader", group=roles.TRADER)

    # then each file has exactly the trades that match
    _, other_lines, _ = _consume_like_asgi(other)
    _, mine_lines, first = _consume_like_asgi(mine)
    assert other_lines == 1
    assert mine_lines == count + 1
    assert {row["customerId"] for row in csv.DictReader(io.StringIO(first))} == {"000002"}
    # and a staff user without orders.view_blotter gets no file at all
    stranger = AsyncClient()
    stranger.force_login(User.objects.create_user("stranger", is_staff=True))
    assert async_to_sync(stranger.get)("/trades/export.csv?customer=000002").status_code == 403


def test_every_exported_column_equals_the_api_trade_shape(market: Market) -> None:
    # given lit and dark fills of a split order, some settled, some not
    from orders import services
    from orders.api.serializers import TradeOutputSerializer

    drive(place("000002", quantity=2500, price="260.00"))
    unsettled = Trade.objects.order_by("id").first()
    assert unsettled is not None
    for trade in Trade.objects.exclude(pk=unsettled.pk):
        services.trade_settle(trade_id=trade.pk)
    kinds = set(Trade.objects.values_list("pool__kind", flat=True))
    assert kinds == {"Lit", "Dark"}

    # when they are exported
    response = _asgi_get("/trades/export.csv?customer=000002", username="trader", group=roles.TRADER)
    content = b"".join(async_to_sync(_collect)(response)).decode()

    # then each row is the API's trade, field by field (None as an empty cell)
    rows = {row["tradeId"]: row for row in csv.DictReader(io.StringIO(content))}
    trades = Trade.objects.select_related("order", "customer", "ticker", "pool")
    assert len(rows) == trades.count()
    for trade in trades:
        expected = {
            name: "" if value is None else str(value) for name, value in TradeOutputSerializer(trade).data.items()
        }
        assert rows[str(trade.trade_id)] == expected


async def _collect(response: StreamingHttpResponse) -> list[bytes]:
    return [part async for part in cast(AsyncGenerator[bytes, None], aiter(response))]
