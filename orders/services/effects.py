"""After-commit effects: what a transaction of the order flow wants done once it has committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from broker.marketdata import services as marketdata_services
from orders.models import Order, Trade
from pools.models import Pool, PoolKind


def queue_for(pool: Pool | str) -> str:
    """The Celery queue of a venue's matching: `lit` or `dark` (by the pool, or its kind)."""
    kind = pool if isinstance(pool, str) else pool.kind
    return "dark" if kind == PoolKind.DARK else "lit"


@dataclass
class Effects:
    """Everything a transaction wants done once it has committed: tasks to send, messages to stream."""

    routes: list[int] = field(default_factory=list)
    # Books to drain, (pool id, ticker id) -> queue: one `match_book` task each, whatever number of
    # children the transaction sent there.
    books: dict[tuple[int, int], str] = field(default_factory=dict)
    # The sweeper's per-child re-sends: (child id, attempt, queue).
    matches: list[tuple[int, int, str]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    orders: dict[int, Order] = field(default_factory=dict)
    settled: list[Trade] = field(default_factory=list)
    market_data: list[int] = field(default_factory=list)  # tickers whose data is missing or stale

    def on_commit(self) -> None:
        # robust: a broker outage must not turn a committed order into an HTTP 500; the sweeper
        # re-drives anything whose task was never sent.
        transaction.on_commit(self.run, robust=True)

    def run(self) -> None:
        from orders import streaming, tasks
        from orders.api.serializers import OrderOutputSerializer, TradeOutputSerializer

        for order_id in self.routes:
            tasks.route_order.apply_async(args=(order_id,))
        for (pool_id, ticker_id), queue in self.books.items():
            tasks.match_book.apply_async(args=(pool_id, ticker_id), queue=queue)
        for child_id, attempt, queue in self.matches:
            tasks.match_child.apply_async(args=(child_id, attempt), queue=queue)
        settle = [trade.pk for trade in self.trades if not trade.busted]
        if settle and settings.SETTLEMENT_CYCLE == "T+0":
            tasks.settle_trades.apply_async(args=(settle,))
        messages: list[tuple[str, dict[str, Any]]] = []
        for trade in self.trades:
            messages.append(
                (trade.customer.customer_id, {"type": "fill", "trade": dict(TradeOutputSerializer(trade).data)})
            )
        for order in self.orders.values():
            messages.append(
                (order.customer.customer_id, {"type": "order", "order": dict(OrderOutputSerializer(order).data)})
            )
        for trade in self.settled:
            messages.append(
                (trade.customer.customer_id, {"type": "settled", "trade": dict(TradeOutputSerializer(trade).data)})
            )
        streaming.publish(messages)
        # Last: asking for market data must never delay or break the order flow above.
        for ticker_id in self.market_data:
            marketdata_services.ticker_refresh_for_order(ticker_id=ticker_id)
