"""The fill stream's outbox: events written with the change they report, numbered after commit, read
back by eventId.

Every fill, order and settled message is inserted into `StreamEvent` inside the transaction whose
change it reports (`events_record`, called by `Effects.on_commit`), without an id of its own: the
writers take no lock and wait for nobody, so their commits still share the WAL flushes (group commit).
After the commit the writer wakes the stream's sequencer (orders/sequencer.py), the one process that
numbers what has committed (`events_sequence`) and publishes it. A wake or a publish that is lost is
only a delay: the sequencer also passes every second, and a subscriber reads the table after the last
id it has (`events_after`), at `?since=`, when it sees a gap and at each heartbeat.

Why not number them at insert: a sequence value is taken before the commit, so a transaction holding
id 9 can commit after the one holding id 10, and a reader that had read past 10 would never see 9. A
lock held to the commit fixes the order but makes every commit wait for the one before it to reach the
disk (measured in docs/performance.md: +40% latency at light load, a collapse at 200 orders/s).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from broker.models import Customer
from broker.sql import script_cursor
from orders.models import OrderEvent, StreamEvent

# pg_advisory_xact_lock key of a numbering pass: passes never overlap, whoever runs them.
SEQUENCE_LOCK = 7_211_013
REPLAY_BATCH = 500
SEQUENCE_BATCH = 2_000

_TABLE = StreamEvent._meta.db_table


# Both inserts read their rows from one JSON array parameter each, and go as one statement (the audit
# rows' INSERT in a WITH): one round trip, bound and prepared by the server like any statement the
# connection runs again. With a parameter per column, four to eight a row, binding cost more CPU than
# the statement itself (py-spy: a tenth of the order worker's time). Rows keep the array's order, so ids
# too.
_AUDIT_SQL = (
    f"INSERT INTO {OrderEvent._meta.db_table} "  # noqa: S608 - table names from the models
    "(order_id, child_id, kind, from_status, to_status, actor, detail, created_at) "
    "SELECT (r->>0)::bigint, (r->>1)::bigint, r->>2, r->>3, r->>4, r->>5, r->6, %s::timestamptz "
    "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS rows(r, n) ORDER BY n"
)
_EVENTS_SQL = (
    f"INSERT INTO {_TABLE} (customer_id, kind, payload, created_at) "  # noqa: S608
    "SELECT (r->>0)::bigint, r->1->>'type', r->1, %s::timestamptz "
    "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS rows(r, n) ORDER BY n"
)
_BOTH_SQL = f"WITH audit AS ({_AUDIT_SQL}) {_EVENTS_SQL}"


def events_record(messages: Sequence[tuple[int, dict[str, Any]]], *, audit: Sequence[OrderEvent] = ()) -> None:
    """Insert one event per (customer pk, payload), in order, in the caller's transaction; and the
    transaction's `audit` rows (orders.OrderEvent, as `bulk_create` would), in the same statement."""
    params: list[Any] = []
    now = timezone.now()
    if audit:
        rows = []
        for event in audit:
            order_id, child_id = _saved_pk(event, "order"), _saved_pk(event, "child")
            rows.append([order_id, child_id, event.kind, event.from_status, event.to_status, event.actor, event.detail])
        params += [now, json.dumps(rows)]
    if messages:
        params += [now, json.dumps([[customer_pk, payload] for customer_pk, payload in messages])]
    if not params:
        return
    sql = _BOTH_SQL if audit and messages else _AUDIT_SQL if audit else _EVENTS_SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _saved_pk(event: OrderEvent, name: str) -> Any:
    """The id of the event's order or child, taken from the object when it was assigned before it was
    saved (as `bulk_create` does); an object still unsaved is an error, not a NULL."""
    value = getattr(event, f"{name}_id")
    field = OrderEvent._meta.get_field(name)
    if value is None and field.is_cached(event):  # type: ignore[union-attr]
        related = getattr(event, name)
        if related is not None and related.pk is None:
            raise ValueError(f"an audit row's {name} was never saved")
        value = None if related is None else related.pk
    return value


@dataclass(frozen=True)
class Numbered:
    """What one numbering pass found: every committed event numbered in (`after`, `upto`], in order,
    each as (customer code, eventId, the message as JSON text with its eventId). Empty when nothing
    was waiting."""

    after: int
    upto: int
    events: list[tuple[str, int, str]]


def events_sequence(*, limit: int = SEQUENCE_BATCH) -> Numbered:
    """Give the oldest `limit` committed events without an eventId the next ids, and commit that. Each
    transaction's events stay together, in the order it wrote them (by the writer's transaction id,
    oldest first: concurrent inserts draw row ids in turns, so row ids alone would interleave them).
    Whatever committed before this pass began is numbered by it (or by the next, past `limit`);
    whatever commits later gets a higher id. Only the sequencer calls this outside tests."""
    # The lock first, in a statement of its own: the numbering statement's snapshot is taken after it,
    # so it sees the ids the previous pass committed. One round trip for both. (Table names from the
    # models; values as parameters.)
    #
    # The waiting rows are found through the partial index of rows without an id, which every pass turns
    # into dead entries (the UPDATE moves the rows out of it). A bitmap scan, the planner's choice for
    # the few rows it expects, visits every dead entry and its heap page again at every pass until
    # VACUUM: at 100 orders/s the pass grew to 0.5 ms in 10 s (2,600 dead entries read per pass), the
    # costliest statement of the order flow, and kept growing. A plain index scan marks the entries it
    # finds dead, so each is visited about once. (SET LOCAL: this transaction only; in a caller's, up to
    # its end.)
    numbering = (
        "SET LOCAL enable_bitmapscan = off; "  # noqa: S608  (table names from the models, values bound)
        f"SELECT pg_advisory_xact_lock({SEQUENCE_LOCK}); "
        f"WITH top AS (SELECT coalesce(max(event_id), 0) AS top FROM {_TABLE}), "
        f"waiting AS (SELECT id, age(xmin) AS age FROM {_TABLE} WHERE event_id IS NULL ORDER BY id LIMIT %s), "
        "numbered AS (SELECT id, row_number() OVER (ORDER BY age DESC, id) AS n FROM waiting) "
        f"UPDATE {_TABLE} AS e SET event_id = top.top + numbered.n "
        f"FROM numbered, top, {Customer._meta.db_table} AS c "
        "WHERE e.id = numbered.id AND c.id = e.customer_id "
        "RETURNING e.event_id, c.customer_id, e.payload::text, top.top"
    )
    if connection.in_atomic_block:  # a caller's transaction (tests): the pass commits with it
        with transaction.atomic(), script_cursor() as cursor:
            cursor.execute(numbering, [limit])
            cursor.nextset()  # past the SET
            cursor.nextset()  # past the lock
            rows = sorted(cursor.fetchall())
    else:
        # In autocommit, the statements of one query string run as one transaction (a cursor binding
        # parameters client-side sends it as a simple query): lock, number and commit in one round
        # trip instead of three (BEGIN, the statements, COMMIT). The pass is on every fill's way to the
        # stream, and on a busy machine each round trip waits for Postgres to be scheduled.
        with script_cursor() as cursor:
            cursor.execute(numbering, [limit])
            cursor.nextset()  # past the SET
            cursor.nextset()  # past the lock
            rows = sorted(cursor.fetchall())
    if not rows:
        return Numbered(after=0, upto=0, events=[])
    # The message is sent as the text it is stored as, with its eventId put in front: no decoding and
    # encoding again here, nor in each subscriber's consumer (jsonb prints an object as "{...}").
    events = [(code, event_id, f'{{"eventId": {event_id}, {payload[1:]}') for event_id, code, payload, _ in rows]
    return Numbered(after=rows[0][3], upto=rows[-1][0], events=events)


def events_after(*, after: int, customer_pk: int | None, limit: int = REPLAY_BATCH) -> list[dict[str, Any]]:
    """The next `limit` messages after event `after`, oldest first, with their eventIds: every
    customer's for staff (`customer_pk` None), else that customer's only."""
    events = StreamEvent.objects.filter(event_id__gt=after)
    if customer_pk is not None:
        events = events.filter(customer_id=customer_pk)
    rows = events.order_by("event_id").values_list("event_id", "payload")[:limit]
    return [{**payload, "eventId": event_id} for event_id, payload in rows]


def last_event_id(*, customer_pk: int | None) -> int:
    """The newest eventId the caller may see (every customer's for None; 0 when there is none)."""
    events = StreamEvent.objects.filter(event_id__isnull=False)
    if customer_pk is not None:
        events = events.filter(customer_id=customer_pk)
    return events.order_by("-event_id").values_list("event_id", flat=True).first() or 0


def oldest_kept_id() -> int | None:
    """The oldest eventId still kept; a `since` before it may have missed pruned events."""
    return (
        StreamEvent.objects.filter(event_id__isnull=False)
        .order_by("event_id")
        .values_list("event_id", flat=True)
        .first()
    )


def events_prune(*, keep_hours: float | None = None, batch: int = 10_000) -> int:
    """Delete numbered events older than the retention (at least 24 hours), a batch per statement.
    An event never numbered (the sequencer was down all that time) is kept for it."""
    hours = max(24.0, keep_hours if keep_hours is not None else settings.STREAM_EVENTS_KEEP_HOURS)
    cutoff = timezone.now() - timedelta(hours=hours)
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {_TABLE} WHERE id IN ("  # noqa: S608
                f"SELECT id FROM {_TABLE} WHERE created_at < %s AND event_id IS NOT NULL ORDER BY id LIMIT %s)",
                [cutoff, batch],
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted
