"""Trade corrections: amend (price, or quantity down) or bust a trade, as agreed with the venue."""

from __future__ import annotations

import logging
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from broker.exceptions import ApplicationError, Conflict, NotFound
from broker.transactions import retry_on_lock_conflict
from orders.models import (
    ChildOrder,
    ChildStatus,
    EventKind,
    LiquidityRole,
    Order,
    OrderEvent,
    OrderStatus,
    Trade,
    TradeVersion,
)
from orders.services.effects import Effects
from orders.services.settlement import to_settle, trade_cost
from orders.services.transitions import Actor, actor_name, transition
from orders.validation import CORRECTION_REASON_TEXT
from pools import services as pool_services
from settlement import services as settlement_services

logger = logging.getLogger(__name__)

# Reports count trading days in New York (docs: the reporting contract).
MARKET_TZ = ZoneInfo("America/New_York")


def _trade_snapshot_change(trade: Trade, *, change: str, reason: str, actor: Actor | str) -> TradeVersion:
    return TradeVersion(
        trade=trade,
        version=trade.version,
        quantity=trade.quantity,
        price=trade.price,
        fee=trade.fee,
        settled=trade.settlement_date is not None,
        change=change,
        reason=reason,
        changed_by=actor_name(actor),
    )


@retry_on_lock_conflict()
def trade_correct(
    *,
    trade_id: int,
    reason: str,
    actor: Actor | str,
    price: Decimal | None = None,
    quantity: int | None = None,
    bust: bool = False,
) -> Trade:
    """Amend (price, or quantity down) or bust a trade, as agreed with the venue.

    The correction applies to the venue execution and to every broker trade it made (both customers
    when two met). Each trade keeps its previous version; a settled trade gets a reversal of the old
    version and a posting of the new one, an unsettled one just changes what its order has pending;
    children and parents are recounted from their remaining trades. Only for finished orders.
    Locks (FOR NO KEY UPDATE, the global order of the module docstring): the parent orders, their
    children, the trades (each by id), the venue execution, then the ledger, then the reservations (by
    order id). Runs again after a deadlock or serialization failure (then Busy, a 503).
    """
    reason = CORRECTION_REASON_TEXT.require(reason, field="reason")  # bounded to TradeVersion.reason, one line
    if not reason:
        raise ApplicationError("A correction needs a reason.", field="reason")
    if not bust and price is None and quantity is None:
        raise ApplicationError("Give a new price or quantity, or bust the trade.", field="price")
    target = Trade.objects.select_related("execution").filter(pk=trade_id).first()
    if target is None:
        raise NotFound("No such trade.")
    with transaction.atomic():
        trades = list(Trade.objects.filter(execution_id=target.execution_id).order_by("pk"))
        parents = {
            order.pk: order
            for order in Order.objects.select_for_update(of=("self",), no_key=True)
            .select_related("customer", "ticker")
            .filter(pk__in={trade.order_id for trade in trades})
            .order_by("pk")
        }
        working = [order for order in parents.values() if not order.is_final]
        if working:
            raise Conflict(f"Order {working[0].order_id} is still working; correct its trades once it is done.")
        children = {
            child.pk: child
            for child in ChildOrder.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk__in={trade.child_id for trade in trades})
            .order_by("pk")
        }
        trades = list(
            Trade.objects.select_for_update(of=("self",), no_key=True)
            .select_related("pool", "ticker", "customer")
            .filter(pk__in=[trade.pk for trade in trades])
            .order_by("pk")
        )
        current = next(trade for trade in trades if trade.pk == trade_id)
        if current.busted:
            raise Conflict("The trade is busted; nothing left to correct.", field="tradeId")
        new_quantity = current.quantity if quantity is None else quantity
        new_price = current.price if price is None else price
        if not bust and not 1 <= new_quantity <= current.quantity:
            raise ApplicationError(
                f"A correction may lower the quantity (1 to {current.quantity}) or bust the trade.", field="quantity"
            )
        execution = pool_services.execution_correct(
            execution_id=current.execution_id, price=new_price, quantity=new_quantity, bust=bust, reason=reason
        )
        versions, events = [], []
        pending_changes: dict[int, Decimal] = {}
        held_unsettled = False
        for trade in trades:
            versions.append(
                _trade_snapshot_change(trade, change="Bust" if bust else "Amend", reason=reason, actor=actor)
            )
            old_cost, was_settled, old_version = trade_cost(trade), trade.settlement_date is not None, trade.version
            if bust:
                trade.busted = True
            else:
                trade.quantity, trade.price = new_quantity, new_price
                trade.fee = execution.taker_fee if trade.liquidity == LiquidityRole.TAKER else execution.maker_fee
                trade.version += 1
            trade.save(update_fields=["quantity", "price", "fee", "version", "busted"])
            if was_settled:
                settlement_services.trade_reverse(trade_ref=trade.pk, version=old_version)
                if not bust:
                    settlement_services.trade_post(trade=to_settle(trade))
            else:
                held_unsettled = held_unsettled or not bust
                new_cost = Decimal(0) if bust else trade_cost(trade)
                pending_changes[trade.order_id] = pending_changes.get(trade.order_id, Decimal(0)) + new_cost - old_cost
            events.append(
                OrderEvent(
                    order=parents[trade.order_id],
                    child_id=trade.child_id,
                    kind=EventKind.BUSTED if bust else EventKind.AMENDED,
                    actor=actor_name(actor),
                    detail={
                        "tradeId": str(trade.trade_id),
                        "reason": reason,
                        "version": trade.version,
                        "quantity": trade.quantity,
                        "price": str(trade.price),
                    },
                )
            )
        # Reservations last and by order id, after the ledger (the global lock order).
        for order_id in sorted(pending_changes):
            settlement_services.reservation_adjust(order_ref=order_id, pending_change=pending_changes[order_id])
        TradeVersion.objects.bulk_create(versions)
        _recount_after_correction(parents=parents, children=children, events=events, actor=actor)
        OrderEvent.objects.bulk_create(events)
        reports_from = min(timezone.localtime(trade.trade_date, MARKET_TZ).date() for trade in trades)
        Effects(orders=parents, reports_from=reports_from, settle=held_unsettled).on_commit()
    return current


def _recount_after_correction(
    *, parents: dict[int, Order], children: dict[int, ChildOrder], events: list[OrderEvent], actor: Actor | str
) -> None:
    """Fill totals from the remaining (not busted) trades; a Filled order or child that no longer is
    full ends Cancelled: it is finished and its remainder will never trade."""
    child_filled = dict(
        Trade.objects.filter(child_id__in=children, busted=False)
        .values("child_id")
        .annotate(total=Sum("quantity"))
        .values_list("child_id", "total")
    )
    now = timezone.now()
    for child in children.values():
        child.filled_quantity = child_filled.get(child.pk, 0)
        if child.status == ChildStatus.FILLED and child.remaining:
            transition(child, ChildStatus.CANCELLED, actor=actor, events=events, correction=True)
        child.updated_at = now
    ChildOrder.objects.bulk_update(children.values(), ["filled_quantity", "status", "updated_at"])
    for order in parents.values():
        totals = Trade.objects.filter(order=order, busted=False).aggregate(
            total_quantity=Sum("quantity"), total_notional=Sum(F("price") * F("quantity")), total_fees=Sum("fee")
        )
        order.filled_quantity = totals["total_quantity"] or 0
        order.filled_notional = totals["total_notional"] or Decimal(0)
        order.fees = totals["total_fees"] or Decimal(0)
        if order.status == OrderStatus.FILLED and order.filled_quantity < order.quantity:
            transition(order, OrderStatus.CANCELLED, actor=actor, events=events, correction=True)
        order.updated_at = now
    Order.objects.bulk_update(parents.values(), ["filled_quantity", "filled_notional", "fees", "status", "updated_at"])
