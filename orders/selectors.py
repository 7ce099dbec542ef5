"""Order reads shared by the API, the sweeper, tests and the bench."""

from __future__ import annotations

from django.db.models import F, QuerySet

from orders.models import FINAL_CHILD_STATUSES, ChildOrder, Order, OrderStatus, Trade


def children_in_flight(*, parent: Order | None = None) -> QuerySet[ChildOrder]:
    """Children whose current routing attempt has not reached its venue yet (a match task is due)."""
    queryset = ChildOrder.objects.filter(attempt__gt=F("submitted_attempt")).exclude(status__in=FINAL_CHILD_STATUSES)
    return queryset.filter(parent=parent) if parent is not None else queryset


def flow_busy(*, order_ids: list[int] | None = None) -> bool:
    """True while any order (of `order_ids`, or any at all) still waits for routing or matching."""
    orders = Order.objects.filter(status=OrderStatus.NEW)
    children = children_in_flight()
    if order_ids is not None:
        orders = orders.filter(pk__in=order_ids)
        children = children.filter(parent_id__in=order_ids)
    return orders.exists() or children.exists()


def settlement_pending() -> bool:
    """True while a trade that is due has not been posted to the ledger yet."""
    from settlement.services import settlement_today

    return Trade.objects.filter(settlement_date__isnull=True, settles_on__lte=settlement_today()).exists()
