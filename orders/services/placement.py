"""Placement: accept an order at the gateway (status New, gateway sequence, reservation) or reject it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from broker.exceptions import Conflict
from broker.marketdata import services as marketdata_services
from broker.models import Customer, Ticker
from broker.sql import insert_rows
from orders import kill_switch
from orders.models import EventKind, Order, OrderEvent, OrderStatus, OrderType, TimeInForce
from orders.services.effects import Effects
from orders.services.transitions import Actor, actor_name, transition
from orders.validation import OrderRequest
from pools.liquidity import round_to_tick
from settlement import services as settlement_services

# `Customer.objects.select_for_update(no_key=True).filter(pk=...)`, written once: every order entry takes
# it, and the ORM compiled it again each time for more CPU than the lock costs.
_LOCK_CUSTOMER_SQL = f"SELECT 1 FROM {Customer._meta.db_table} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608


@dataclass(frozen=True)
class Placement:
    order: Order
    created: bool


def _replay(existing: Order, fingerprint: str) -> Placement:
    if existing.request_fingerprint != fingerprint:
        raise Conflict(
            f"clientOrderId {existing.client_order_id!r} was already used for a different order ({existing.order_id}).",
            field="clientOrderId",
        )
    return Placement(order=existing, created=False)


@transaction.atomic
def order_place(*, request: OrderRequest, customer: Customer, ticker: Ticker, actor: Actor) -> Placement:
    """Accept an order: record it (status New, gateway sequence) and, after commit, route it.

    The same clientOrderId with the same body returns the original order (created=False); with a
    different body it is a Conflict. Concurrent repeats are arbitrated by the unique constraint.
    Locks: the customer (FOR NO KEY UPDATE, first in the global order), then inserts the order and its
    reservation; nothing else.
    """
    fingerprint = request.fingerprint()
    # One placement at a time per customer: the risk check and the reservation it makes must see every
    # earlier order of the customer (locks: customer before anything of the order flow).
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_CUSTOMER_SQL, [customer.pk])
    if request.client_order_id:
        existing = Order.objects.filter(customer=customer, client_order_id=request.client_order_id).first()
        if existing is not None:
            return _replay(existing, fingerprint)
    order = Order(
        customer=customer,
        ticker=ticker,
        direction=request.direction,
        order_type=request.order_type,
        quantity=request.quantity,
        price=request.price,
        protection_price=(
            _protection_price(ticker=ticker, direction=request.direction)
            if request.order_type == OrderType.MARKET
            else None
        ),
        time_in_force=request.time_in_force,
        client_order_id=request.client_order_id,
        request_fingerprint=fingerprint,
        entered_by=cast(Any, actor) if actor is not None and actor.is_authenticated else None,
    )
    # insert_rows: the INSERT written once (the ORM's save compiled it again for every order).
    if request.client_order_id:
        try:
            with transaction.atomic():
                insert_rows(Order, [order])
        except IntegrityError:
            # A concurrent request with the same clientOrderId committed first; it is the original.
            existing = Order.objects.get(customer=customer, client_order_id=request.client_order_id)
            return _replay(existing, fingerprint)
    else:
        # Without a clientOrderId no unique constraint can refuse the row: no savepoint needed.
        insert_rows(Order, [order])

    events = [
        OrderEvent(order=order, kind=EventKind.ACCEPTED, to_status=OrderStatus.NEW, actor=actor_name(actor), detail={})
    ]
    effects = Effects(orders={order.pk: order})
    if marketdata_services.needs_refresh(ticker, now=timezone.now()):
        effects.market_data.append(ticker.pk)  # fetched in the background; this order uses what we have
    reject_reason = _pre_trade_refusal(order=order, ticker=ticker)
    if reject_reason:
        order.reject_reason = reject_reason
        transition(order, OrderStatus.REJECTED, actor="gateway", events=events, reason=reject_reason)
        order.save(update_fields=["status", "reject_reason", "updated_at"])
    elif order.time_in_force == TimeInForce.FOK:
        effects.routes.append(order.pk)  # routed alone (it locks books): a task of its own
    else:
        effects.route_tickers[ticker.pk] = order.pk  # a task per ticker routes every New order of it
    effects.audit += events
    effects.on_commit()
    return Placement(order=order, created=True)


def _protection_price(*, ticker: Ticker, direction: str) -> Decimal | None:
    if ticker.reference_price is None:
        return None
    collar = settings.MARKET_ORDER_COLLAR
    if direction == "Buy":
        return round_to_tick(ticker.reference_price * (1 + collar), up=True)
    return round_to_tick(ticker.reference_price * (1 - collar), up=False)


def _pre_trade_refusal(*, order: Order, ticker: Ticker) -> str:
    """Why the order may not trade (empty when it may). Reserves its cash or shares when it may.

    Caller holds the customer's row lock.
    """
    halted = kill_switch.halts_cached().reason(customer_id=order.customer_id, ticker_id=order.ticker_id)
    if halted:
        return halted
    if order.order_type == OrderType.MARKET and order.protection_price is None:
        # Without any reference price a Market order has nothing to be protected against.
        return f"no reference price for {ticker.symbol}: Market orders need one"
    limit = order.venue_limit
    assert limit is not None
    check = settlement_services.reservation_open(
        order_ref=order.pk,
        customer_id=order.customer_id,
        direction=order.direction,
        symbol=ticker.symbol,
        quantity=order.quantity,
        per_share_price=limit,
    )
    return "" if check.accepted else check.reason
