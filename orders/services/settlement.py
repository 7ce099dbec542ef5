"""Settlement: post due trades to the ledger (delivery versus payment) and stamp their settlementDate.

Batched: `trades_settle` settles any number of trades in one transaction and a fixed handful of
statements (the trades locked by id, the postings and their entries, the reservations, the events).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from broker.sql import update_rows
from orders.models import EventKind, OrderEvent, Trade
from orders.services.effects import Effects
from settlement import services as settlement_services

# Trades per settlement transaction.
SETTLE_BATCH = 500


def to_settle(trade: Trade) -> settlement_services.TradeToSettle:
    """What the ledger needs of a broker trade (its ticker loaded)."""
    return settlement_services.TradeToSettle(
        trade_ref=trade.pk,
        customer_id=trade.customer_id,
        pool_id=trade.pool_id,
        symbol=trade.ticker.symbol,
        direction=trade.direction,
        quantity=trade.quantity,
        price=trade.price,
        fee=trade.fee,
        version=trade.version,
    )


def trade_cost(trade: Trade) -> Decimal:
    """What the trade takes from its order's reservation: cash (notional + fee) for a buy, shares for a sell."""
    return settlement_services.trade_cost(
        direction=trade.direction, quantity=trade.quantity, price=trade.price, fee=trade.fee
    )


def trades_settle(*, trade_ids: list[int], today: date | None = None) -> int:
    """Post each of the trades that is due and not yet settled to the ledger; returns how many were posted.

    Idempotent: a trade already settled (or busted, or not yet due) is skipped, so a redelivered task
    posts nothing twice (the ledger's unique constraints would refuse it anyway). Locks (package
    docstring): the trades (FOR NO KEY UPDATE, by id, one statement), then the ledger postings, then
    their orders' reservations (by order id, one statement). It locks no order or child: the settled
    events' foreign-key checks take FOR KEY SHARE on them at commit, which the no-key locks held by
    matching, cancels and corrections never block.
    """
    if not trade_ids:
        return 0
    return _settle(trades=Trade.objects.filter(pk__in=trade_ids), today=today, skip_locked=False, limit=None)


def trades_settle_pending(*, today: date | None = None, limit: int = SETTLE_BATCH) -> int:
    """Settle every due, unsettled trade no other settlement holds, oldest first, up to `limit` (task body).

    What the order flow sends after its fills (`orders.settle_pending`): one task settles whatever is
    waiting, so under load one batch covers the fills of many matches. Trades a concurrent settlement
    holds are skipped, not waited for: that one settles them.
    """
    due = Trade.objects.filter(settles_on__lte=today or settlement_services.settlement_today())
    return _settle(trades=due, today=today, skip_locked=True, limit=limit)


def _settle(*, trades: QuerySet[Trade], today: date | None, skip_locked: bool, limit: int | None) -> int:
    today = today or settlement_services.settlement_today()
    with transaction.atomic():
        candidates = (
            trades.filter(settlement_date__isnull=True, busted=False)
            .select_for_update(of=("self",), no_key=True, skip_locked=skip_locked)
            .select_related("order", "customer", "ticker", "pool")
            .order_by("pk")
        )
        locked = list(candidates[:limit] if limit is not None else candidates)
        due = []
        for trade in locked:
            settles_on = trade.settles_on or settlement_services.settlement_due_on(traded_at=trade.trade_date)
            if settles_on <= today:
                due.append((trade, settles_on))
        if not due:
            return 0
        settlement_services.trades_post([to_settle(trade) for trade, _ in due])
        costs: dict[int, Decimal] = {}
        for trade, _ in due:
            costs[trade.order_id] = costs.get(trade.order_id, Decimal(0)) + trade_cost(trade)
        settlement_services.reservations_settle(costs)
        now = timezone.now()
        for trade, _ in due:
            trade.settlement_date = now
        update_rows(Trade, [trade for trade, _ in due], ["settlement_date"])
        OrderEvent.objects.bulk_create(
            OrderEvent(
                order=trade.order,
                child_id=trade.child_id,
                kind=EventKind.SETTLED,
                actor="settlement",
                detail={"tradeId": str(trade.trade_id), "settlesOn": str(settles_on)},
            )
            for trade, settles_on in due
        )
        Effects(settled=[trade for trade, _ in due]).on_commit()
    return len(due)


def trade_settle(*, trade_id: int, today: date | None = None) -> Trade | None:
    """Settle one trade if it is due (see `trades_settle`); returns it as it is now, None if there is none."""
    trades_settle(trade_ids=[trade_id], today=today)
    return Trade.objects.select_related("order", "customer", "ticker", "pool").filter(pk=trade_id).first()


def trades_settle_due(*, today: date | None = None, batch: int = 1000) -> int:
    """The scheduled settlement run: every unsettled trade due on or before today, a batch at a time."""
    today = today or settlement_services.settlement_today()
    due = list(
        Trade.objects.filter(settlement_date__isnull=True, busted=False, settles_on__lte=today)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch]
    )
    return trades_settle(trade_ids=due, today=today)
