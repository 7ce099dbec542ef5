"""broker.sql.update_rows: each row gets exactly its instance's values of the named fields, whatever their
type (decimals to the last place, times to the microsecond, text, NULLs), and nothing else changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from broker.sql import CompiledQuery, insert_rows, update_rows
from orders.models import ChildOrder, ChildStatus, Order, OrderStatus
from tests.conftest import Market, place

pytestmark = pytest.mark.django_db
QUOTED = 'it\'s "quoted"; -- ok'


def test_update_rows_writes_each_rows_own_values_and_only_the_named_fields(market: Market) -> None:
    # given three orders, changed in memory in different ways
    orders = [place(quantity=10 + n, price="250.00", timeInForce="Day") for n in range(3)]
    moment = timezone.now() + timedelta(microseconds=123457)
    orders[0].status, orders[0].filled_notional, orders[0].updated_at = OrderStatus.CANCELLED, Decimal("1.0001"), moment
    orders[1].status, orders[1].reject_reason, orders[1].price = OrderStatus.REJECTED, QUOTED, None
    orders[2].quantity = 999  # not among the fields written: stays as stored
    before = {order.pk: Order.objects.get(pk=order.pk) for order in orders}

    # when they are written
    count = update_rows(Order, reversed(orders), ["status", "filled_notional", "reject_reason", "price", "updated_at"])

    # then each row holds its own values, exactly, and the other columns are untouched
    assert count == 3
    first, second, third = (Order.objects.get(pk=order.pk) for order in orders)
    assert (first.status, first.filled_notional, first.updated_at) == (OrderStatus.CANCELLED, Decimal("1.0001"), moment)
    assert (second.status, second.reject_reason, second.price) == (OrderStatus.REJECTED, QUOTED, None)
    assert third.quantity == before[third.pk].quantity == 12
    assert first.quantity == before[first.pk].quantity


def test_update_rows_writes_array_columns(market: Market) -> None:
    from orders.models import ChildOrder
    from tests.conftest import drive

    order = place(direction="Buy", type="Limit", quantity=100, price="260.00", timeInForce="IOC")
    drive(order)
    children = list(ChildOrder.objects.filter(parent=order).order_by("pk"))
    children[0].venues_tried = ["EDGA", "it's"]
    for child in children[1:]:
        child.venues_tried = []

    update_rows(ChildOrder, children, ["venues_tried"])

    stored = list(ChildOrder.objects.filter(parent=order).order_by("pk").values_list("venues_tried", flat=True))
    assert stored == [["EDGA", "it's"]] + [[] for _ in children[1:]]


# --- CompiledQuery -----------------------------------------------------------------------------------

_BY_CUSTOMER = CompiledQuery(
    lambda shape, customer_id, statuses, limit=None: (
        Order.objects.filter(
            customer_id=customer_id, status__any=statuses, **({"price__lte": limit} if shape == "capped" else {})
        )
        .select_related("customer", "ticker")
        .order_by("pk")
    )
)


def test_a_compiled_query_returns_what_the_orm_returns_for_every_set_of_values(market: Market) -> None:
    from broker.models import Customer

    # given orders of two customers in different states and prices
    me = Customer.objects.get(customer_id="000002")
    other = Customer.objects.exclude(pk=me.pk).order_by("pk").first()
    assert other is not None
    mine = [place(quantity=10 + n, price=f"25{n}.00", timeInForce="Day") for n in range(3)]
    theirs = [place(other.customer_id, quantity=5, price="251.00", timeInForce="Day")]
    Order.objects.filter(pk=mine[0].pk).update(status=OrderStatus.CANCELLED)

    def orm(customer_id: int, statuses: Sequence[str], limit: Decimal | None) -> list[Order]:
        queryset = Order.objects.filter(customer_id=customer_id, status__in=statuses)
        if limit is not None:
            queryset = queryset.filter(price__lte=limit)
        return list(queryset.select_related("customer", "ticker").order_by("pk"))

    cases = [
        (me.pk, [OrderStatus.NEW], None),
        (me.pk, [OrderStatus.NEW, OrderStatus.CANCELLED], None),
        (me.pk, [OrderStatus.NEW, OrderStatus.CANCELLED], Decimal("251.00")),
        (other.pk, [OrderStatus.NEW], None),
        (other.pk, [], None),
    ]
    for customer_id, statuses, limit in cases:
        # when the compiled query runs with those values (compiled once per shape, on its first run)
        shape = "capped" if limit is not None else None
        values = {"limit": limit} if limit is not None else {}
        got = _BY_CUSTOMER.objects(shape, customer_id=customer_id, statuses=statuses, **values)

        # then the same rows, every field and the related objects alike, as the ORM's own query
        want = orm(customer_id, statuses, limit)
        assert [order.pk for order in got] == [order.pk for order in want]
        for a, b in zip(got, want, strict=True):
            assert {f.attname: getattr(a, f.attname) for f in Order._meta.concrete_fields} == {
                f.attname: getattr(b, f.attname) for f in Order._meta.concrete_fields
            }
            assert a.customer.name == b.customer.name
            assert a.ticker.symbol == b.ticker.symbol
            assert not a._state.adding
    assert set(_BY_CUSTOMER._compiled) == {None, "capped"}
    assert theirs[0].pk in [order.pk for order in _BY_CUSTOMER.objects(customer_id=other.pk, statuses=["New"])]


@pytest.mark.django_db(transaction=True)  # outside the test's own transaction
def test_a_compiled_row_lock_still_needs_a_transaction(market: Market) -> None:
    from django.db import transaction
    from django.db.transaction import TransactionManagementError

    locked = CompiledQuery(lambda shape, pk: Order.objects.select_for_update().filter(pk=pk))
    order = place(quantity=10, price="250.00", timeInForce="Day")
    with transaction.atomic():
        assert [row.pk for row in locked.objects(pk=order.pk)] == [order.pk]
    with pytest.raises(TransactionManagementError):
        locked.objects(pk=order.pk)


def test_a_value_that_does_not_reach_the_sql_as_a_parameter_is_refused(market: Market) -> None:
    # a value the query does not use as a parameter: the compiled SQL could never take its next value
    ignoring = CompiledQuery(lambda shape, pk, status: Order.objects.filter(pk=pk).values_list("pk"))
    with pytest.raises(ValueError, match="status"):
        ignoring.rows(pk=1, status=OrderStatus.NEW)


@pytest.mark.django_db(transaction=True)  # the rehearsal's own transaction, not the test's
def test_the_rehearsal_compiles_the_hot_queries_and_runs_each_once_in_a_transaction_it_rolls_back(
    market: Market,
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from broker import sql
    from orders.services import matching, routing
    from pools import selectors
    from pools import services as pool_services

    hot: list[CompiledQuery[Any]] = [
        routing._CLAIM,
        matching._BATCH,
        matching._CHILDREN,
        matching._PARENTS_LOCKED,
        matching._PARENTS_WITH_OPEN_CHILDREN,
        pool_services._BOOK_LOCKED,
        pool_services._RESTING,
        selectors._LIT_DEPTH,
    ]
    for query in hot:
        query._compiled.clear()
    waiting = place(quantity=10, price="250.00", timeInForce="Day")  # a New order nothing has claimed

    with CaptureQueriesContext(connection) as queries:
        ran = sql.rehearse_compiled()

    statements = [statement["sql"].lstrip() for statement in queries.captured_queries]
    assert all(query in sql._REHEARSED for query in hot)
    assert ran == sum(len(query._rehearsals) for query in sql._REHEARSED)
    for query in hot:
        assert set(query._compiled) == {shape for shape, _ in query._rehearsals}
    # one transaction, rolled back, with one SELECT per rehearsal in it
    assert statements[0] == "BEGIN"
    assert statements[-1] == "ROLLBACK"
    assert len(statements) == ran + 2
    assert all(statement.startswith("SELECT") for statement in statements[1:-1])
    # and it matched nothing: the waiting order is still New, unclaimed
    assert connection.get_autocommit()
    waiting.refresh_from_db()
    assert waiting.status == OrderStatus.NEW


# --- insert_rows -------------------------------------------------------------------------------------


def _children(order: Order, count: int, first_index: int = 100) -> list[ChildOrder]:
    return [
        ChildOrder(
            parent=order,
            ticker_id=order.ticker_id,
            index=first_index + n,
            quantity=7 + n,
            status=ChildStatus.ROUTED,
            venue_time_in_force="IOC",
            route_reason=QUOTED,
            venues_tried=["EDGA", "it's"][: n + 1],
            attempt=1,
        )
        for n in range(count)
    ]


def test_insert_rows_writes_what_bulk_create_writes_and_reads_the_new_ids_back(market: Market) -> None:
    # given the same new children twice, for one order
    order = place(quantity=10, price="250.00", timeInForce="Day")
    ours, django = _children(order, 3), _children(order, 3, first_index=200)

    # when one set goes through insert_rows, the other through bulk_create
    saved = insert_rows(ChildOrder, ours)
    ChildOrder.objects.bulk_create(django)

    # then every row was written with its own id (read back in order), stamped, and marked saved
    assert saved == ours
    assert all(child.pk is not None and not child._state.adding for child in ours)
    assert len({child.pk for child in ours}) == 3
    skip = {"id", "index", "created_at", "updated_at"}
    for a, b in zip(ours, django, strict=True):
        row_a, row_b = ChildOrder.objects.get(pk=a.pk), ChildOrder.objects.get(pk=b.pk)
        fields = [field.attname for field in ChildOrder._meta.concrete_fields if field.attname not in skip]
        assert {name: getattr(row_a, name) for name in fields} == {name: getattr(row_b, name) for name in fields}
        assert row_a.created_at == a.created_at
        assert row_a.created_at is not None


def test_insert_rows_leaves_a_database_default_to_the_database_and_reads_it_back(market: Market) -> None:
    # given two orders (the gateway sequence is the column's database default, nextval)
    first = place(quantity=10, price="250.00", timeInForce="Day")
    template = Order.objects.get(pk=first.pk)
    rows = [
        Order(
            customer_id=template.customer_id,
            ticker_id=template.ticker_id,
            direction=template.direction,
            order_type=template.order_type,
            quantity=5 + n,
            price=template.price,
        )
        for n in range(2)
    ]

    # when they are inserted together
    insert_rows(Order, rows)

    # then each has the id and the sequence the database gave it, in the rows' order, after the first one
    stored = {order.pk: order.sequence for order in Order.objects.filter(pk__in=[row.pk for row in rows])}
    assert stored == {row.pk: row.sequence for row in rows}
    assert first.sequence < rows[0].sequence < rows[1].sequence
    assert [Order.objects.get(pk=row.pk).quantity for row in rows] == [5, 6]


def test_insert_rows_takes_rows_with_their_own_ids_and_refuses_an_unsaved_relation(market: Market) -> None:
    from django.db import connection

    order = place(quantity=10, price="250.00", timeInForce="Day")
    # rows that carry their primary key (drawn ahead, as book orders' are) are written with it
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('orders_childorder', 'id'))")
        (drawn,) = cursor.fetchone()
    (child,) = _children(order, 1)
    child.pk = drawn
    insert_rows(ChildOrder, [child])
    assert ChildOrder.objects.get(pk=drawn).quantity == 7

    # a related object still unsaved is an error, as with bulk_create, and nothing is written
    (orphan,) = _children(Order(), 1)
    with pytest.raises(ValueError, match="unsaved"):
        insert_rows(ChildOrder, [orphan])
    assert ChildOrder.objects.filter(parent=order).count() == 1


def test_psycopg_keeps_the_conversion_of_a_long_statement_run_again(market: Market) -> None:
    # A 40-child INSERT has 600 parameters, past psycopg's own limit (50) for keeping a statement's
    # conversion; the order flow's statements are written once and run again (broker.sql).
    from psycopg import _queries

    order = place(quantity=10, price="250.00", timeInForce="Day")
    insert_rows(ChildOrder, _children(order, 40, first_index=100))
    before = _queries._query2pg.cache_info()

    insert_rows(ChildOrder, _children(order, 40, first_index=200))

    after = _queries._query2pg.cache_info()
    assert after.hits == before.hits + 1
    assert after.misses == before.misses
