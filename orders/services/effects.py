"""After-commit effects: what a transaction of the order flow wants done once it has committed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.conf import settings
from django.db import transaction

from broker.cache import shared_cache
from broker.celery import app as celery_app
from broker.marketdata import services as marketdata_services
from orders.models import Order, OrderEvent, Trade
from pools.models import Pool, PoolKind

logger = logging.getLogger(__name__)

# Set while a `settle_pending` task is queued and not yet started: the fills committed meanwhile need no
# task of their own, that one will settle them (it clears the mark before it reads what is due).
SETTLE_PENDING_KEY = "orders:settle-pending"
SETTLE_PENDING_TTL_SECONDS = 5
# The task waits this long before it starts, so the fills of that moment share it: a settlement is one
# transaction and a task for any number of trades, and T+0 settlement need not be instant.
SETTLE_COALESCE_SECONDS = 1.0


def settle_pending_request() -> None:
    """Make sure a `settle_pending` task will run after this commit: send one unless one is waiting.

    If the waiting task is lost (its worker killed), the mark expires and the next fills send another;
    the scheduled `settle_due` run settles anything left behind meanwhile.
    """
    from orders import tasks

    try:
        waiting = not shared_cache().add(SETTLE_PENDING_KEY, 1, timeout=SETTLE_PENDING_TTL_SECONDS)
    except Exception:  # the shared cache is down: send one; a duplicate settles nothing twice
        waiting = False
    if not waiting:
        tasks.settle_pending.apply_async(countdown=SETTLE_COALESCE_SECONDS)


# Set while a `route_order` task for the ticker is queued and has not started: the orders accepted
# meanwhile need no task of their own, since that one routes every New order of the ticker
# (`routing.orders_route`, which clears the mark before it reads them). Expires so that a lost task
# only delays the orders after it by this long; the sweeper re-drives any order left New.
ROUTE_PENDING_KEY = "orders:route-pending:{ticker_id}"
ROUTE_PENDING_TTL_SECONDS = 5


def route_request(*, ticker_id: int, order_id: int) -> None:
    """Make sure a `route_order` task will route this order of the ticker: send one unless one is waiting."""
    from orders import tasks

    key = ROUTE_PENDING_KEY.format(ticker_id=ticker_id)
    try:
        waiting = not shared_cache().add(key, 1, timeout=ROUTE_PENDING_TTL_SECONDS)
    except Exception:  # the shared cache is down: send one; a duplicate routes nothing twice
        waiting = False
    if waiting:
        return
    try:
        tasks.route_order.apply_async(args=(order_id, ticker_id))
    except Exception:
        # Not sent: the next order of the ticker must not count on it.
        route_pending_clear(ticker_id=ticker_id)
        raise


def route_pending_clear(*, ticker_id: int) -> bool:
    """Clear the ticker's mark; False when the shared cache could not be reached (the mark may stay)."""
    try:
        shared_cache().delete(ROUTE_PENDING_KEY.format(ticker_id=ticker_id))
    except Exception:
        logger.warning("could not clear the route-pending mark", exc_info=True)
        return False
    return True


def reports_request(*, day: date) -> None:
    """Have reporting recompute its stored days from `day` on (a trade of that day was corrected)."""
    try:
        # By name: orders never imports reporting (reporting reads orders, not the other way round).
        celery_app.send_task(
            "reporting.reaggregate_from", args=[day.isoformat()], queue="reporting", ignore_result=True
        )
    except Exception:  # the broker is down: nothing re-sends this, so say what to run instead
        logger.exception("reports from %s not recomputed: run `manage.py recover_reports` or the admin action", day)


def queue_for(pool: Pool | str) -> str:
    """The Celery queue of a venue's matching: `lit` or `dark` (by the pool, or its kind)."""
    kind = pool if isinstance(pool, str) else pool.kind
    return "dark" if kind == PoolKind.DARK else "lit"


@dataclass
class Effects:
    """Everything a transaction wants done once it has committed: tasks to send, messages to stream."""

    # The gateway's new orders, ticker id -> one order id: a task per ticker unless one is waiting.
    route_tickers: dict[int, int] = field(default_factory=dict)
    # Orders whose task is sent whatever is waiting (the sweeper's re-sends).
    routes: list[int] = field(default_factory=list)
    # Books to drain, (pool id, ticker id) -> queue: one `match_book` task each, whatever number of
    # children the transaction sent there.
    books: dict[tuple[int, int], str] = field(default_factory=dict)
    # The sweeper's per-child re-sends: (child id, attempt, queue).
    matches: list[tuple[int, int, str]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    orders: dict[int, Order] = field(default_factory=dict)
    settled: list[Trade] = field(default_factory=list)
    # The transaction's audit rows, inserted with its stream events in one round trip (`record`).
    audit: list[OrderEvent] = field(default_factory=list)
    market_data: list[int] = field(default_factory=list)  # tickers whose data is missing or stale
    # Unsettled trades this transaction held locked (a correction): a settlement running meanwhile
    # skipped them (it skips locked rows), so ask for another one.
    settle: bool = False
    # A trade of this trading day (New York) changed: the stored reports from it on are stale.
    reports_from: date | None = None

    # Messages of an earlier change in the same transaction, already rendered (`lead_with`): recorded first.
    leading: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    # Whether this change's stream events were written to the outbox (`record`, once).
    _recorded: bool | None = field(default=None, init=False, repr=False)

    def lead_with(self, earlier: Effects) -> None:
        """Take over `earlier`, a change made before this one in the same transaction that wants nothing
        but its messages and audit rows: they are recorded ahead of this one's, in the same round trip.
        Its order messages are rendered now, so they show the orders as that change left them."""
        others = (earlier.route_tickers, earlier.routes, earlier.books, earlier.matches, earlier.trades,
                  earlier.settled, earlier.market_data, earlier.settle, earlier.reports_from)  # fmt: skip
        if any(others):
            raise ValueError("lead_with takes over messages and audit rows only")
        self.leading[:0] = earlier.messages()
        self.audit[:0] = earlier.audit
        earlier._recorded = False  # nothing of its own left to record

    def messages(self) -> list[tuple[int, dict[str, Any]]]:
        """This change's stream messages, (customer pk, payload), in the order they are recorded."""
        from orders.api.serializers import order_output, trade_output

        rows: list[tuple[int, dict[str, Any]]] = list(self.leading)
        for trade in self.trades:
            rows.append((trade.customer_id, {"type": "fill", "trade": trade_output(trade)}))
        for order in self.orders.values():
            rows.append((order.customer_id, {"type": "order", "order": order_output(order)}))
        for trade in self.settled:
            rows.append((trade.customer_id, {"type": "settled", "trade": trade_output(trade)}))
        return rows

    def on_commit(self) -> None:
        """Write the stream's events in the caller's transaction (the last thing it does), then do the
        rest once it has committed."""
        self.record()
        # robust: a broker outage must not turn a committed order into an HTTP 500; the sweeper
        # re-drives anything whose task was never sent.
        transaction.on_commit(self.run, robust=True)

    def record(self) -> None:
        """Build this change's fill, order and settled messages and insert them into the outbox
        (`orders.outbox`), with the audit rows, in one round trip; the stream's sequencer numbers and
        publishes them after the commit. Once per Effects."""
        if self._recorded is not None:
            return
        from orders.outbox import events_record

        rows = self.messages()
        events_record(rows, audit=self.audit)
        self._recorded = bool(rows)

    def run(self) -> None:
        from orders import sequencer, tasks

        self.record()  # a caller that runs the effects directly, outside a transaction of its own
        if self._recorded:
            # First (it only hands the wake to a thread): the sequencer numbers and publishes the
            # events while the tasks below are sent.
            sequencer.wake()
        for ticker_id, order_id in self.route_tickers.items():
            route_request(ticker_id=ticker_id, order_id=order_id)
        for order_id in self.routes:
            tasks.route_order.apply_async(args=(order_id,))
        for (pool_id, ticker_id), queue in self.books.items():
            tasks.match_book.apply_async(args=(pool_id, ticker_id), queue=queue)
        for child_id, attempt, queue in self.matches:
            tasks.match_child.apply_async(args=(child_id, attempt), queue=queue)
        if (self.trades or self.settle) and settings.SETTLEMENT_CYCLE == "T+0":
            settle_pending_request()
        if self.reports_from is not None:
            reports_request(day=self.reports_from)
        # Last: asking for market data must never delay or break the order flow above.
        for ticker_id in self.market_data:
            marketdata_services.ticker_refresh_for_order(ticker_id=ticker_id)
