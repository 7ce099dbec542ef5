"""One route task per ticker routes every New order of it (issue 11: the order flow keeps up).

The gateway sends a `route_order` task for an order only when no task of its ticker is waiting; the
task routes every New order of the ticker that no other transaction holds, in batches, each order
getting the decision it would get alone (the halt rule included). What the gateway sends stays in the
real Redis broker's queues (no worker runs here), where these tests count it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import QuerySet

from orders import kill_switch, services
from orders.models import ChildOrder, EventKind, HaltScope, Order, OrderEvent, OrderStatus
from orders.services.effects import ROUTE_PENDING_KEY
from pools import services as pool_services
from pools.models import Book
from tests.conftest import Market, give_shares, make_ticker, place
from tests.orders.test_sweep import _queued

pytestmark = pytest.mark.django_db


def _route_tasks(order_ids: list[int]) -> int:
    return sum(1 for args in _queued("orders", "orders.route_order") if args[0] in order_ids)


def _hold(rows: QuerySet[Any]) -> tuple[threading.Event, threading.Thread]:
    """Lock `rows` (FOR UPDATE) in another transaction, on a thread of its own, until the event is set."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(rows.select_for_update())
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(30)
    return release, holder


def _status(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def test_the_gateway_sends_one_route_task_per_ticker_while_one_waits(
    market: Market, django_capture_on_commit_callbacks
) -> None:
    # given no route task of COIN waiting
    ticker = market["ticker"]
    cache.delete(ROUTE_PENDING_KEY.format(ticker_id=ticker.pk))

    # when three orders of COIN and one fill-or-kill order are accepted
    with django_capture_on_commit_callbacks(execute=True):
        limits = [place(price="256.00", timeInForce="Day") for _ in range(3)]
        fill_or_kill = place(price="256.00", timeInForce="FOK")

    # then one task covers the three; the fill-or-kill order (routed alone) has its own
    assert _route_tasks([order.pk for order in limits]) == 1
    assert _route_tasks([fill_or_kill.pk]) == 1

    # and once that task has started (it clears the mark), the next order sends a task again
    services.orders_route(order_id=limits[0].pk, match_now=False)
    with django_capture_on_commit_callbacks(execute=True):
        later = place(price="256.00", timeInForce="Day")
    assert _route_tasks([later.pk]) == 1


def test_one_task_routes_every_new_order_of_its_ticker_and_only_that_ticker(market: Market) -> None:
    # given three New orders of COIN (no task ran: on-commit effects do not fire here) and one of another ticker
    coin = [place(price="256.00"), place("000003", direction="Sell", price="257.00"), place(type="Market")]
    other_ticker = make_ticker("MSFT", "400.00")
    pool_services.books_ensure(ticker_id=other_ticker.pk)
    give_shares("MSFT")
    other = place(ticker="MSFT", price="399.00")

    # when the task of the first COIN order runs
    claimed = services.orders_route(order_id=coin[0].pk, match_now=False)

    # then every COIN order was routed as it would have been alone: children, a routed event each, status
    assert claimed == 3
    for order in coin:
        assert _status(order) == OrderStatus.ROUTED
        children = ChildOrder.objects.filter(parent=order)
        assert sum(children.values_list("quantity", flat=True)) == order.quantity
        assert OrderEvent.objects.filter(order=order, kind=EventKind.ROUTED).count() == children.count()
        assert OrderEvent.objects.filter(order=order, kind=EventKind.STATUS, to_status=OrderStatus.ROUTED).count() == 1
    # and the other ticker's order waits for its own task
    assert _status(other) == OrderStatus.NEW

    # and running the task again (a redelivery) routes nothing twice
    assert services.orders_route(order_id=coin[0].pk, match_now=False) == 0
    assert ChildOrder.objects.filter(parent__in=coin).count() == sum(
        ChildOrder.objects.filter(parent=order).count() for order in coin
    )
    assert (
        OrderEvent.objects.filter(order__in=coin, kind=EventKind.ROUTED).count()
        == ChildOrder.objects.filter(parent__in=coin).count()
    )


def test_a_halted_customer_s_orders_wait_and_its_immediate_ones_end_cancelled(market: Market) -> None:
    # given New orders of two customers, then a halt of one of them
    waiting = place("000002", price="256.00", timeInForce="Day")
    immediate = place("000002", price="256.00", timeInForce="IOC")
    free = place("000003", price="256.00", timeInForce="Day")
    customer = market["customers"]["000002"]
    kill_switch.halt_set(scope=HaltScope.CUSTOMER, target_id=customer.pk, active=True, reason="desk", actor="ops")

    # when the ticker's route task runs
    services.orders_route(order_id=free.pk, match_now=False)

    # then the other customer's order is routed, the halted Day order waits New and untouched, and the
    # halted IOC order ends Cancelled with the halt as its reason
    assert _status(free) == OrderStatus.ROUTED
    assert _status(waiting) == OrderStatus.NEW
    assert not ChildOrder.objects.filter(parent=waiting).exists()
    cancelled = Order.objects.get(pk=immediate.pk)
    assert cancelled.status == OrderStatus.CANCELLED
    assert "desk" in cancelled.reject_reason
    assert not ChildOrder.objects.filter(parent=immediate).exists()


@pytest.mark.django_db(transaction=True)
def test_orders_another_transaction_holds_are_skipped_and_the_task_s_own_order_is_waited_for(
    market: Market,
) -> None:
    # given four New orders of COIN, two of them held (row-locked) by another transaction
    first, held, third, own = (place(price="256.00") for _ in range(4))
    release, holder = _hold(Order.objects.filter(pk__in=[held.pk, own.pk]))

    # when the first order's task runs, it routes what it can claim without waiting
    services.orders_route(order_id=first.pk, match_now=False)
    assert [_status(order) for order in (first, held, third, own)] == [
        OrderStatus.ROUTED,
        OrderStatus.NEW,
        OrderStatus.ROUTED,
        OrderStatus.NEW,
    ]

    # and the task of a held order waits for that order's lock instead of skipping it
    outcome: list[int] = []

    def route_own() -> None:
        try:
            outcome.append(services.orders_route(order_id=own.pk, match_now=False))
        finally:
            connection.close()

    own_task = threading.Thread(target=route_own)
    own_task.start()
    own_task.join(1.0)
    assert own_task.is_alive(), "the task returned without its own order while another transaction held it"
    release.set()
    holder.join(30)
    own_task.join(30)

    # then the task's own order is routed once the other transaction let go; the other order it held is
    # that transaction's business (in the product: a route, a cancel or the sweeper's claim, which
    # routes it, ends it, or sends its task)
    assert outcome == [0]
    assert _status(own) == OrderStatus.ROUTED
    assert _status(held) == OrderStatus.NEW


def test_an_order_whose_routing_fails_does_not_hold_up_the_rest_of_its_ticker(
    market: Market, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given three New orders of COIN, the middle one failing in the router's planning (an injected fault:
    # any non-transient error inside a batch, which rolls back the batch's 200 orders)
    from orders import routing as router

    plan = router.plan_children

    def plan_failing_for_13_shares(**kwargs: object) -> object:
        if kwargs["quantity"] == 13:
            raise ValueError("an injected planning fault")
        return plan(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(router, "plan_children", plan_failing_for_13_shares)
    good, bad, later = place(price="256.00"), place(price="256.00", quantity=13), place(price="256.00")

    # when the ticker's route task runs
    services.orders_route(order_id=good.pk, match_now=False)

    # then the others are routed one at a time, the failing one stays New for the sweeper, and both
    # failures are in the log
    assert _status(good) == OrderStatus.ROUTED
    assert _status(later) == OrderStatus.ROUTED
    assert _status(bad) == OrderStatus.NEW
    assert not ChildOrder.objects.filter(parent=bad).exists()
    assert "a route batch of ticker" in caplog.text
    assert f"routing order {bad.pk} failed" in caplog.text


def test_a_long_burst_goes_on_in_a_follow_up_task(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    # given five New orders of COIN, and batches of two with at most two batches per task
    from orders.services import routing

    monkeypatch.setattr(routing, "ROUTE_BATCH", 2)
    monkeypatch.setattr(routing, "ROUTE_BATCHES_PER_TASK", 2)
    orders = [place(price="256.00") for _ in range(5)]

    # when the first order's task runs
    claimed = services.orders_route(order_id=orders[0].pk, match_now=False)

    # then it routed two full batches and left the fifth order to a follow-up task it sent
    assert claimed == 4
    assert [_status(order) for order in orders].count(OrderStatus.ROUTED) == 4
    assert _status(orders[4]) == OrderStatus.NEW
    assert _route_tasks([orders[0].pk]) == 1


def test_the_gateways_task_carries_the_ticker_and_reads_no_order_it_routes(
    market: Market, django_capture_on_commit_callbacks
) -> None:
    from django.test.utils import CaptureQueriesContext

    # given an order accepted at the gateway: its task carries the ticker
    cache.delete(ROUTE_PENDING_KEY.format(ticker_id=market["ticker"].pk))
    with django_capture_on_commit_callbacks(execute=True):
        order = place(price="256.00", timeInForce="Day")
    (args,) = [args for args in _queued("orders", "orders.route_order") if args[0] == order.pk]
    assert args == [order.pk, market["ticker"].pk]

    # when that task runs, then it routes the order without reading it first (the batch claims it)
    with CaptureQueriesContext(connection) as queries:
        assert services.orders_route(order_id=order.pk, ticker_id=market["ticker"].pk, match_now=False) == 1
    assert _status(order) == OrderStatus.ROUTED
    assert not any(
        'FROM "orders_order" WHERE "orders_order"."id" =' in query["sql"] and "FOR" not in query["sql"]
        for query in queries.captured_queries
    ), [query["sql"] for query in queries.captured_queries]

    # and a redelivery, its order routed already, reads it unlocked and waits on no lock of it
    with CaptureQueriesContext(connection) as queries:
        assert services.orders_route(order_id=order.pk, ticker_id=market["ticker"].pk, match_now=False) == 0
    blocking = [
        query["sql"]
        for query in queries.captured_queries
        if 'FROM "orders_order"' in query["sql"]
        and "FOR NO KEY UPDATE" in query["sql"]
        and "SKIP LOCKED" not in query["sql"]
    ]
    assert blocking == []
    assert ChildOrder.objects.filter(parent=order).count() >= 1


def _stream_rows(order: Order) -> list[tuple[str, str | None, str]]:
    """The order's stream events in insert order: (kind, the order message's status, the inserting
    transaction's id)."""
    order_id = str(order.order_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, payload->'order'->>'status', xmin::text FROM orders_streamevent"
            " WHERE payload->'order'->>'orderId' = %s OR payload->'trade'->>'orderId' = %s ORDER BY id",
            [order_id, order_id],
        )
        return [tuple(row) for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_children_on_a_free_book_are_matched_in_the_routing_transaction(market: Market) -> None:
    # given a marketable Buy of COIN accepted at the gateway
    order = place(type="Market", quantity=100)

    # when the ticker's route task runs
    services.orders_route(order_id=order.pk, ticker_id=order.ticker_id)

    # then the order is filled, and its Routed message, its fill and its Filled message were written by
    # one transaction (routing's), after the gateway's: one commit instead of two
    assert _status(order) == OrderStatus.FILLED
    rows = _stream_rows(order)
    assert [(kind, status) for kind, status, _ in rows] == [
        ("order", OrderStatus.NEW),
        ("order", OrderStatus.ROUTED),
        ("fill", None),
        ("order", OrderStatus.FILLED),
    ]
    placed, *routed_and_matched = (xid for _, _, xid in rows)
    assert len(set(routed_and_matched)) == 1
    assert placed not in routed_and_matched
    # and the audit trail reads as it did with two transactions
    kinds = list(OrderEvent.objects.filter(order=order).order_by("pk").values_list("kind", flat=True))
    assert kinds.index(EventKind.ROUTED) < kinds.index(EventKind.FILL)


@pytest.mark.django_db(transaction=True)
def test_routing_never_waits_for_a_book_another_transaction_holds(market: Market) -> None:
    # given a marketable Buy of COIN, and every COIN book held by another transaction (a match running)
    from tests.orders.test_sweep import _queued

    order = place(type="Market", quantity=100)
    release, holder = _hold(Book.objects.filter(ticker_id=order.ticker_id))
    try:
        # when the route task runs
        routed: list[int] = []

        def route() -> None:
            try:
                routed.append(services.orders_route(order_id=order.pk, ticker_id=order.ticker_id))
            finally:
                connection.close()

        task = threading.Thread(target=route)
        task.start()
        task.join(10)

        # then it routed the order without waiting for the books, and left its child to the book's task
        assert not task.is_alive(), "routing waited for a book another transaction holds"
        assert routed == [1]
        assert _status(order) == OrderStatus.ROUTED
        child = ChildOrder.objects.get(parent=order)
        assert child.submitted_attempt < child.attempt
        assert [child.pool_id, order.ticker_id] in _queued("lit", "orders.match_book")
    finally:
        release.set()
        holder.join(30)

    # and that task fills it once the book is free
    assert child.pool_id is not None
    services.book_match(pool_id=child.pool_id, ticker_id=order.ticker_id)
    assert _status(order) == OrderStatus.FILLED


@pytest.mark.django_db(transaction=True)
def test_an_inline_match_writes_each_order_once_and_still_sees_its_other_children(market: Market) -> None:
    from django.test.utils import CaptureQueriesContext

    from pools.models import PoolKind

    # given a large marketable Buy of COIN (two children for the dark pools, one for a lit book), and
    # every dark book held by another transaction
    order = place(type="Market", quantity=2500)
    dark = [pool.pk for pool in market["pools"].values() if pool.kind == PoolKind.DARK]
    # By pool id, not through a join: a join would lock the venues' rows too, and every insert naming
    # a venue (the children) would wait for them.
    release, holder = _hold(Book.objects.filter(ticker_id=order.ticker_id, pool_id__in=dark))
    try:
        # when the route task runs: its lit child is matched inline, the dark ones wait for their books
        with CaptureQueriesContext(connection) as queries:
            services.orders_route(order_id=order.pk, ticker_id=order.ticker_id)

        # then the order is partly filled, not filled: its dark children still work
        order.refresh_from_db()
        statuses = sorted(ChildOrder.objects.filter(parent=order).values_list("pool__kind", "status"))
        assert statuses == [(PoolKind.DARK, "Routed"), (PoolKind.DARK, "Routed"), (PoolKind.LIT, "Filled")]
        assert (order.status, order.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 500)
        # and the routing transaction wrote the order's row once, and read back neither the order it
        # holds nor which of its children still work
        sql = [query["sql"] for query in queries.captured_queries]
        assert sum(1 for text in sql if text.startswith('UPDATE "orders_order"')) == 1, sql
        claims = [text for text in sql if 'FROM "orders_order"' in text and "FOR NO KEY UPDATE" in text]
        assert len(claims) == 1, claims
        assert "SKIP LOCKED" in claims[0], claims
        assert not any("DISTINCT" in text and 'FROM "orders_childorder"' in text for text in sql), sql
    finally:
        release.set()
        holder.join(30)

    # and once the dark books are free their children fill it
    for child in ChildOrder.objects.filter(parent=order, pool__kind=PoolKind.DARK):
        assert child.pool_id is not None
        services.book_match(pool_id=child.pool_id, ticker_id=order.ticker_id)
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, 2500)
