"""The fill stream's outbox: events written with the change they report, read back by id.

Every fill, order and settled message is inserted into `StreamEvent` inside the transaction whose
change it reports (`events_record`, called by `Effects.on_commit`), and published after the commit
with its row id as `eventId`. A publish that is lost is only late: a subscriber that reconnects with
`?since=<eventId>` is sent what the table holds after that id (`events_after`), and every subscriber
catches up from the table at each heartbeat (orders/consumers.py).

Ids follow commit order: the insert takes a transaction-level advisory lock, so the transactions
that write events commit one after another from that point on (the lock is the last thing they take;
nothing is waited for while it is held). Without it, an id taken by a transaction that commits later
than a higher one could be skipped by a reader that had already read past it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from orders.models import StreamEvent

STREAM_LOCK = 7_211_013  # pg_advisory_xact_lock key of the event ids' commit order
REPLAY_BATCH = 500


def events_record(messages: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Insert one event per (customer pk, payload) and stamp each payload with its `eventId`, in order.

    Called inside the transaction of the change: the lock taken here is held until its commit."""
    if not messages:
        return
    now = timezone.now()
    rows = ", ".join(["(%s, %s, %s::jsonb, %s)"] * len(messages))
    params: list[Any] = []
    for customer_pk, payload in messages:
        params += [customer_pk, payload["type"], json.dumps(payload), now]
    with connection.cursor() as cursor:
        # One round trip: the lock, then the rows (ids drawn in VALUES order, returned in it).
        table = StreamEvent._meta.db_table
        insert = f"INSERT INTO {table} (customer_id, kind, payload, created_at) VALUES {rows} RETURNING id"  # noqa: S608
        cursor.execute(f"SELECT pg_advisory_xact_lock({STREAM_LOCK}); {insert}", params)
        cursor.nextset()
        ids = [row[0] for row in cursor.fetchall()]
    for (_, payload), event_id in zip(messages, ids, strict=True):
        payload["eventId"] = event_id


def events_after(*, after: int, customer_pk: int | None, limit: int = REPLAY_BATCH) -> list[dict[str, Any]]:
    """The next `limit` messages after event `after`, oldest first, with their eventIds: every
    customer's for staff (`customer_pk` None), else that customer's only."""
    events = StreamEvent.objects.filter(id__gt=after)
    if customer_pk is not None:
        events = events.filter(customer_id=customer_pk)
    return [{**payload, "eventId": event_id} for event_id, payload in events.values_list("id", "payload")[:limit]]


def last_event_id(*, customer_pk: int | None) -> int:
    """The newest event id the caller may see (0 when there is none)."""
    events = StreamEvent.objects.all() if customer_pk is None else StreamEvent.objects.filter(customer_id=customer_pk)
    return events.order_by("-id").values_list("id", flat=True).first() or 0


def oldest_kept_id() -> int | None:
    """The oldest event still kept; a `since` before it may have missed pruned events."""
    return StreamEvent.objects.order_by("id").values_list("id", flat=True).first()


def events_prune(*, keep_hours: float | None = None, batch: int = 10_000) -> int:
    """Delete events older than the retention (at least 24 hours), a batch per statement."""
    hours = max(24.0, keep_hours if keep_hours is not None else settings.STREAM_EVENTS_KEEP_HOURS)
    cutoff = timezone.now() - timedelta(hours=hours)
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {StreamEvent._meta.db_table} WHERE id IN ("  # noqa: S608
                f"SELECT id FROM {StreamEvent._meta.db_table} WHERE created_at < %s ORDER BY id LIMIT %s)",
                [cutoff, batch],
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted
