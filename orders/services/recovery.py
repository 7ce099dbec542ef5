"""Recovery: re-drive work whose task may have been lost (broker down at commit, worker killed)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from orders.models import (
    ChildOrder,
    ChildStatus,
    Order,
    OrderStatus,
)
from orders.services.effects import Effects, queue_for
from pools import selectors as pool_selectors

logger = logging.getLogger(__name__)


SWEEP_BATCH = 1000  # items of each kind claimed per sweep; the rest wait for the next sweep


def orders_sweep(*, older_than: timedelta | None = None) -> dict[str, int]:
    """Re-drive work whose task may have been lost (broker down at commit, worker killed).

    Orders still New and children whose current attempt never reached its venue, unchanged for
    `older_than` (default SWEEP_AFTER_SECONDS), are claimed (`_sweep_claim`) and their task is sent
    again: at most once per interval, and each further re-send of the same stuck state waits twice as
    long as the one before (up to SWEEP_BACKOFF_MAX_SECONDS). Under a backlog, where the tasks are
    queued rather than lost, the sweeper so adds a few duplicates per item, not a copy of every stuck
    item every 5 s; and a duplicate match task returns before the book lock (`child_match`).

    The claims commit before anything is published, so no row stays locked while up to 2,000 tasks go
    to the broker (the very tasks that will want those rows); if publishing fails (the broker cannot be
    reached), the claims are taken back (`_sweep_unclaim`) so the next sweep sends them again, and
    whatever did go out before the failure is a harmless duplicate.
    """
    after = timedelta(seconds=settings.SWEEP_AFTER_SECONDS) if older_than is None else older_than
    now = timezone.now()
    cutoff = now - after
    effects = Effects()
    with transaction.atomic():
        orders = _sweep_claim(
            model=Order,
            stuck="status = %s AND updated_at < %s",
            params=[OrderStatus.NEW, cutoff],
            now=now,
            after=after,
            returning="claimed.id",
        )
        effects.routes.extend(order_id for (order_id,) in orders)
        children = _sweep_claim(
            model=ChildOrder,
            stuck="status IN (%s, %s) AND attempt > submitted_attempt AND pool_id IS NOT NULL AND updated_at < %s",
            params=[ChildStatus.ROUTED, ChildStatus.PARTIALLY_FILLED, cutoff],
            now=now,
            after=after,
            returning="claimed.id, claimed.attempt, claimed.pool_id",
        )
        pools = pool_selectors.pools_by_id()
        effects.matches.extend(
            (child_id, attempt, queue_for(pools[pool_id])) for child_id, attempt, pool_id in children
        )
    if effects.routes or effects.matches:
        logger.warning("sweeper re-driving %d orders and %d children", len(effects.routes), len(effects.matches))
        try:
            effects.run()
        except Exception:
            _sweep_unclaim(order_ids=effects.routes, child_ids=[child_id for child_id, _, _ in effects.matches])
            raise
    return {"orders": len(effects.routes), "children": len(effects.matches)}


def _sweep_unclaim(*, order_ids: list[int], child_ids: list[int]) -> None:
    """Take back claims whose tasks may not have been sent: due again at the next sweep."""
    Order.objects.filter(pk__in=order_ids).update(swept_at=None)
    ChildOrder.objects.filter(pk__in=child_ids).update(swept_at=None)


def _sweep_claim(
    *,
    model: type[Order] | type[ChildOrder],
    stuck: str,
    params: list[Any],
    now: datetime,
    after: timedelta,
    returning: str,
) -> list[tuple[Any, ...]]:
    """Claim the stuck rows of `model` that are due for a re-send, and return `returning` of each.

    `stuck` is the SQL condition of a stuck row (its placeholders take `params`). A stuck row is due when
    the sweeper has not re-sent it since the row last changed, or when its last re-send is older than
    `after` x 2^(re-sends - 1), capped at SWEEP_BACKOFF_MAX_SECONDS. The one conditional UPDATE records
    the claim in `swept_at` and `sweeps` and leaves `updated_at` alone (the row's last real change).
    Rows another transaction holds (a matcher, a concurrent sweep) are skipped, not waited for, and a
    row that changed meanwhile is re-checked against the condition (READ COMMITTED), so two sweeps
    never both claim, and send, the same row.
    """
    table = connection.ops.quote_name(model._meta.db_table)
    # Only constants go into the text: the table name and the callers' literal conditions.
    sql = f"""
        UPDATE {table} AS claimed
        SET swept_at = %s,
            sweeps = CASE WHEN claimed.swept_at IS NULL OR claimed.swept_at < claimed.updated_at
                          THEN 1 ELSE claimed.sweeps + 1 END
        WHERE claimed.id IN (
            SELECT id FROM {table}
            WHERE ({stuck})
              AND (swept_at IS NULL
                   OR swept_at < updated_at
                   OR swept_at <= %s - LEAST(%s * power(2, LEAST(sweeps, 30) - 1), %s) * interval '1 second')
            ORDER BY id
            LIMIT %s
            FOR NO KEY UPDATE SKIP LOCKED
        )
        RETURNING {returning}
    """  # noqa: S608
    backoff: list[Any] = [now, after.total_seconds(), settings.SWEEP_BACKOFF_MAX_SECONDS, SWEEP_BATCH]
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, *params, *backoff])
        return list(cursor.fetchall())


def sweep_backoff_reset() -> int:
    """Make every order and child the sweeper is backing off due again; returns how many.

    Called after a halt is released: what the halt held (orders waiting New, children held before their
    venue) was re-sent and backed off while the halt lasted, and would otherwise wait up to
    SWEEP_BACKOFF_MAX_SECONDS more for its next re-send. Rows another transaction holds are skipped, not
    waited for (they are moving anyway, which restarts their back-off), so this can never deadlock
    with the order flow.
    """
    reset = 0
    # Only rows still stuck (the sweep's own conditions): `swept_at` stays on rows that moved on since.
    stuck = (
        (Order, "status = %s", [OrderStatus.NEW]),
        (
            ChildOrder,
            "status IN (%s, %s) AND attempt > submitted_attempt",
            [ChildStatus.ROUTED, ChildStatus.PARTIALLY_FILLED],
        ),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for model, condition, params in stuck:
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(
                f"""
                UPDATE {table} SET swept_at = NULL, sweeps = 0
                WHERE id IN (
                    SELECT id FROM {table} WHERE swept_at IS NOT NULL AND {condition}
                    ORDER BY id FOR NO KEY UPDATE SKIP LOCKED
                )
                """,  # noqa: S608  (only constants go into the text: the table name and the conditions)
                params,
            )
            reset += cursor.rowcount
    return reset
