"""Celery tasks of the order flow: thin, named, idempotent wrappers around one service call each.

They take ids, never model instances; a missing row means the work is moot and the task returns.
Acknowledged late (settings), so a task whose worker dies is delivered again: the services make the
replay a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import DatabaseError, OperationalError

from orders import services
from settlement import services as settlement_services

logger = logging.getLogger(__name__)

# Retry only what is transient (a dropped connection, a deadlock victim); a bug must surface.
TRANSIENT = (OperationalError,)

# The order flow's tasks: re-delivered if their worker dies, retried with back-off on a transient error.
FLOW: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": TRANSIENT,
    "retry_backoff": True,
    "max_retries": 5,
    "time_limit": 60,
    "soft_time_limit": 50,
}


def concerns(kind: str) -> dict[str, Any]:
    """Task options naming what its first argument is ("order", "child", "batch"): the dead-letter screen
    (broker/deadletters.py) shows it and offers the order's manual actions."""
    return {"dead_letter_subject": kind}


@shared_task(name="orders.route_order", **concerns("order"), **FLOW)
def route_order(order_id: int, ticker_id: int | None = None) -> int:
    # Routes this order and every other New order of its ticker (one task per ticker while one waits).
    # The gateway sends the ticker along (it saves the task a read of the order); a re-send may not.
    return services.orders_route(order_id=order_id, ticker_id=ticker_id)


@shared_task(name="orders.match_child", **concerns("child"), **FLOW)
def match_child(child_id: int, attempt: int) -> None:
    # The sweeper's re-send for one stuck child, on the `lit` or `dark` queue by pool type: it drains
    # the child's whole book.
    services.child_match(child_id=child_id, attempt=attempt)


@shared_task(name="orders.match_book", **FLOW)
def match_book(pool_id: int, ticker_id: int) -> int | None:
    # Sent to the `lit` or `dark` queue by pool type (orders.services.effects.Effects) for a book that
    # children were sent to and that was busy: one batch takes every child waiting there.
    return services.book_match(pool_id=pool_id, ticker_id=ticker_id)


@shared_task(name="orders.expire_day_orders", acks_late=True, time_limit=120, soft_time_limit=110)
def expire_day_orders() -> int:
    return services.orders_expire_day()


@shared_task(name="orders.sweep", acks_late=True, time_limit=60, soft_time_limit=50)
def sweep() -> dict[str, int]:
    # Every 5 s (beat). Both halves claim what they re-send, so overlapping sweeps never double it.
    from orders import bulk

    swept = {**services.orders_sweep(), **bulk.bulk_batches_sweep()}
    _ledger_fold()  # what staff posted by hand, and anything settled while no settlement ran after it
    return swept


@shared_task(name="orders.settle_trades", **{**FLOW, "time_limit": 120, "soft_time_limit": 110})
def settle_trades(trade_ids: list[int]) -> int:
    # Settles these trades if due (on the `settlement` queue). The order flow itself now asks for
    # `settle_pending`; this stays for messages already queued and for operators.
    settled = services.trades_settle(trade_ids=trade_ids)
    _ledger_fold()
    return settled


@shared_task(name="orders.settle_pending", **{**FLOW, "time_limit": 120, "soft_time_limit": 110})
def settle_pending() -> int:
    # T+0: sent after the commit of fills (orders.services.effects.settle_pending_request), on the
    # `settlement` queue; it settles every due trade, so one task covers many fills.
    from broker.cache import shared_cache
    from orders.services.effects import SETTLE_PENDING_KEY
    from orders.services.settlement import SETTLE_BATCH

    try:
        shared_cache().delete(SETTLE_PENDING_KEY)  # before reading what is due: later fills send a new task
    except Exception:  # without the shared cache every fill sends its own task anyway
        logger.warning("could not clear the settle-pending mark", exc_info=True)
    settled = total = services.trades_settle_pending()
    while settled == SETTLE_BATCH:
        settled = services.trades_settle_pending()
        total += settled
    _ledger_fold()
    return total


@shared_task(name="orders.settle_due", acks_late=True, time_limit=300, soft_time_limit=290)
def settle_due() -> int:
    settled = services.trades_settle_due()
    _ledger_fold()
    return settled


def _ledger_fold() -> None:
    # After the ledger's writes, in a transaction of its own: fold what can no longer change into the
    # accounts' balances, so that buying power reads a few rows, not the day's history. The settlement
    # has committed already; a fold that fails is only late (the next one does its work).
    try:
        settlement_services.ledger_fold()
    except DatabaseError:
        logger.warning("ledger fold failed; the next settlement or sweep folds instead", exc_info=True)


@shared_task(
    name="orders.bulk_validate",
    acks_late=True,
    autoretry_for=TRANSIENT,
    max_retries=3,
    time_limit=600,
    **concerns("batch"),
)
def bulk_validate(batch_id: int) -> None:
    from orders import bulk

    bulk.bulk_batch_validate(batch_id=batch_id)


@shared_task(
    name="orders.bulk_book",
    acks_late=True,
    autoretry_for=TRANSIENT,
    max_retries=3,
    time_limit=1800,
    **concerns("batch"),
)
def bulk_book(batch_id: int) -> None:
    from orders import bulk

    bulk.bulk_batch_book_rows(batch_id=batch_id)


@shared_task(name="orders.prune_stream_events", acks_late=True, time_limit=600, soft_time_limit=590)
def prune_stream_events() -> int:
    # Hourly (beat): events past the stream's retention; a `since` before what is left gets a reset.
    from orders import outbox

    return outbox.events_prune()
