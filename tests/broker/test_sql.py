"""broker.sql.update_rows: each row gets exactly its instance's values of the named fields, whatever their
type (decimals to the last place, times to the microsecond, text, NULLs), and nothing else changes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from broker.sql import update_rows
from orders.models import Order, OrderStatus
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
