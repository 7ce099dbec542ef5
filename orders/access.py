"""Orders and trades a user may see or act on (`broker.access` decides the permission and the customer).

Someone else's order or trade is "not found" for a client, exactly like one that does not exist: an id
must not tell a client that another customer's order is there.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from broker import access
from broker.exceptions import NotFound
from orders.models import Order, Trade


def orders_for_user(*, user: Any, permission: str) -> QuerySet[Order]:
    return access.scoped(Order.objects.select_related("customer", "ticker"), user=user, permission=permission)


def order_for_user(*, user: Any, order_id: Any, permission: str) -> Order:
    """One order with its child orders, if `user` may use `permission` on it (403 / 404 otherwise)."""
    order = (
        orders_for_user(user=user, permission=permission)
        .prefetch_related("children__pool")
        .filter(order_id=order_id)
        .first()
    )
    if order is None:
        raise NotFound(f"No order {order_id}.")
    return order


def trades_for_user(*, user: Any, permission: str) -> QuerySet[Trade]:
    return access.scoped(
        Trade.objects.select_related("order", "customer", "ticker", "pool"), user=user, permission=permission
    )


def trade_for_user(*, user: Any, trade_id: Any, permission: str) -> Trade:
    """One trade (busted ones too), if `user` may use `permission` on it (403 / 404 otherwise)."""
    trade = trades_for_user(user=user, permission=permission).filter(trade_id=trade_id).first()
    if trade is None:
        raise NotFound(f"No trade {trade_id}.")
    return trade
