"""Work that multiplies or gets stuck (issue 10, item 5).

The sweeper claims what it re-sends with a conditional update, so a stuck order or child is re-sent at
most once per interval (each re-send of the same stuck state waiting twice as long as the one before)
and two sweeps never both send it; a duplicate match task answers from an unlocked read instead of
queueing on the book lock; and bulk batches left Validating or Booking are resumed by the sweep, or
end Failed with their reason on the screen once they have used their attempts.

No worker runs in these tests: what the sweeper sends stays in the real Redis broker's queues, where
the tests count it.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from broker.celery import app as celery_app
from orders import bulk, roles, services, tasks
from orders.models import BulkBatch, BulkStatus, ChildOrder, ChildStatus, Order
from tests.conftest import Market, drive, place
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db


def _queued(queue: str, task: str) -> list[list[Any]]:
    """The positional arguments of every `task` message waiting in the broker's `queue`."""
    with celery_app.connection_for_write() as broker:
        raw = broker.default_channel.client.lrange(queue, 0, -1)  # type: ignore[attr-defined]  # kombu's Redis channel
    found = []
    for item in raw:
        message = json.loads(item)
        if message["headers"]["task"] == task:
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append(args)
    return found


def _match_messages(child_ids: list[int]) -> int:
    return sum(1 for queue in ("lit", "dark") for args in _queued(queue, "orders.match_child") if args[0] in child_ids)


def _route_messages(order_ids: list[int]) -> int:
    return sum(1 for args in _queued("orders", "orders.route_order") if args[0] in order_ids)


def _age(model: type[Model], pks: list[int], *, seconds: int = 600, field: str = "updated_at") -> None:
    model._default_manager.filter(pk__in=pks).update(**{field: timezone.now() - timedelta(seconds=seconds)})


# --- orders and children ---------------------------------------------------------------------------


def test_sweeping_twice_within_the_interval_sends_nothing_the_second_time(market: Market) -> None:
    # given an order still New and a routed order whose match tasks sit unconsumed, both stuck for minutes
    waiting = place(quantity=100, price="260.00")
    routed = place("000003", quantity=2500, price="260.00")
    services.order_route(order_id=routed.pk)
    children = list(ChildOrder.objects.filter(parent=routed).values_list("pk", flat=True))
    assert len(children) == 3
    _age(Order, [waiting.pk, routed.pk])
    _age(ChildOrder, children)
    queued = _match_messages(children), _route_messages([waiting.pk])

    # when the sweeper runs, and runs again within its interval (beat every 5 s, a backlog in the queues)
    first = services.orders_sweep()
    after_first = _match_messages(children), _route_messages([waiting.pk])
    second = services.orders_sweep()
    after_second = _match_messages(children), _route_messages([waiting.pk])

    # then the first sweep re-sent each stuck item once, and the second sent nothing more
    assert first == {"orders": 1, "children": 3}
    assert after_first == (queued[0] + 3, queued[1] + 1)
    assert second == {"orders": 0, "children": 0}
    assert after_second == after_first
    # and what was claimed is recorded on the rows
    assert set(ChildOrder.objects.filter(pk__in=children).values_list("sweeps", flat=True)) == {1}
    assert Order.objects.get(pk=waiting.pk).sweeps == 1


def test_a_child_still_stuck_is_re_sent_each_time_after_twice_the_wait(market: Market, settings: Any) -> None:
    # given a child whose match task is never consumed, stuck for minutes, and a 10 s sweep interval
    settings.SWEEP_AFTER_SECONDS = 10
    settings.SWEEP_BACKOFF_MAX_SECONDS = 40
    order = place(quantity=300, price="260.00")
    services.order_route(order_id=order.pk)
    child = ChildOrder.objects.get(parent=order)
    _age(ChildOrder, [child.pk])
    # (the broker's queues outlive each test: an earlier one may have left a message for this child id)
    before = _match_messages([child.pk])

    def swept_after(seconds: int) -> int:
        _age(ChildOrder, [child.pk], seconds=seconds, field="swept_at")
        return services.orders_sweep()["children"]

    # when it is swept, then swept again as the intervals pass
    assert services.orders_sweep()["children"] == 1  # stuck: re-sent
    assert swept_after(11) == 1  # one interval after the 1st re-send: the 2nd
    assert swept_after(11) == 0  # the 3rd waits two intervals
    assert swept_after(21) == 1
    assert swept_after(21) == 0  # the 4th waits four
    assert swept_after(41) == 1
    assert swept_after(41) == 1  # and never longer than SWEEP_BACKOFF_MAX_SECONDS

    # then every re-send was counted, and each one is a message in the queue
    child.refresh_from_db()
    assert child.sweeps == 5
    assert _match_messages([child.pk]) - before == 5

    # when the child changes (here: re-routed to a new attempt), it starts over at one interval
    _age(ChildOrder, [child.pk], seconds=20, field="swept_at")
    ChildOrder.objects.filter(pk=child.pk).update(attempt=2, updated_at=timezone.now() - timedelta(seconds=11))
    before = _queued_attempts(child.pk).count(2)
    assert services.orders_sweep()["children"] == 1
    child.refresh_from_db()
    assert child.sweeps == 1
    assert _queued_attempts(child.pk).count(2) - before == 1


def _queued_attempts(child_id: int) -> list[int]:
    return [
        args[1] for queue in ("lit", "dark") for args in _queued(queue, "orders.match_child") if args[0] == child_id
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_never_both_send_an_item(market: Market) -> None:
    # given children stuck in flight: routed and committed, their books' tasks sent and lost (the
    # broker of this test has no worker)
    order = place(quantity=2500, price="260.00")
    services.order_route(order_id=order.pk, match_now=False)
    children = list(ChildOrder.objects.filter(parent=order).values_list("pk", flat=True))
    # (committed tasks of this transactional test did reach the broker: count from here)
    _age(ChildOrder, children)
    _age(Order, [order.pk])
    before = _match_messages(children)

    # when one sweep has claimed them and not committed yet, and a second sweep runs meanwhile
    other: dict[str, Any] = {}

    def second_sweep() -> None:
        try:
            other["swept"] = services.orders_sweep()
        finally:
            connection.close()

    with transaction.atomic():
        first = services.orders_sweep()
        thread = threading.Thread(target=second_sweep)
        thread.start()
        thread.join(timeout=60)  # a guard against a hang, not a timing assertion
        assert not thread.is_alive(), "the second sweep waited on the first one's claims"
    # and a third runs after the first committed
    third = services.orders_sweep()

    # then only the first sent them: the others skipped what it holds, then what it recorded
    assert first["children"] == len(children)
    assert other["swept"]["children"] == 0
    assert third["children"] == 0
    assert _match_messages(children) == before + len(children)


def test_a_duplicate_match_task_answers_without_taking_the_book_lock(market: Market) -> None:
    # given a child resting on its venue and a child that filled (both submitted for their attempt)
    resting = place(quantity=100, price="200.00")
    filled = place("000003", quantity=100, price="260.00")
    drive(resting)
    drive(filled)
    resting_child = ChildOrder.objects.get(parent=resting)
    filled_child = ChildOrder.objects.get(parent=filled)
    assert resting_child.status == ChildStatus.ROUTED
    assert resting_child.submitted_attempt == resting_child.attempt
    assert filled_child.status == ChildStatus.FILLED

    # when their match tasks are delivered again (a redelivery, or a sweeper's re-send)
    with CaptureQueriesContext(connection) as queries:
        services.child_match(child_id=resting_child.pk, attempt=resting_child.attempt)
        services.child_match(child_id=filled_child.pk, attempt=filled_child.attempt)
        services.child_match(child_id=filled_child.pk, attempt=filled_child.attempt + 1)  # never sent: refused too

    # then each answered from one unlocked read: no book lock, nothing written
    sql = [query["sql"] for query in queries.captured_queries]
    assert [statement for statement in sql if "FOR UPDATE" in statement] == []
    assert len(sql) == 3
    assert all(statement.lstrip().upper().startswith("SELECT") for statement in sql)


# --- bulk batches ------------------------------------------------------------------------------------


def _trader() -> Any:
    return staff_user("trader", roles.TRADER)


def _rows(count: int, *, seed: int) -> list[dict[str, str]]:
    return bulk.bulk_rows_generate(count=count, seed=seed)


def test_a_batch_left_booking_is_resumed_by_the_sweep_and_books_every_valid_row_once(market: Market) -> None:
    # given a validated batch of six valid rows and one bad one
    rows = _rows(6, seed=11)
    rows.insert(3, {**rows[0], "ticker": "ZZZZ"})
    batch = bulk.bulk_batch_create(rows=rows, source="half.csv", actor=_trader())
    assert (batch.status, batch.valid) == (BulkStatus.PREVIEW, 6)
    # and its booking stopped half way: row 1 booked and recorded, rows 2 and 3 placed but not recorded
    # (the worker died before it saved the rows), the rest never placed
    BulkBatch.objects.filter(pk=batch.pk).update(status=BulkStatus.BOOKING)
    batch.refresh_from_db()
    interrupted = [dict(row) for row in batch.rows]
    for row in interrupted[:3]:
        bulk._book_row(batch, row)
    recorded = interrupted[:1] + [dict(row) for row in batch.rows[1:]]
    for row in recorded[1:]:
        row.pop("orderId", None)
    BulkBatch.objects.filter(pk=batch.pk).update(rows=recorded, processed=1)
    assert Order.objects.count() == 3

    # when the sweep runs before the grace period is over, nothing happens
    assert bulk.bulk_batches_sweep() == {"batches": 0, "batches_failed": 0}
    # when it runs once the batch has been quiet for longer
    _age(BulkBatch, [batch.pk])
    swept = bulk.bulk_batches_sweep()

    # then it sent the booking task again, once (a second sweep does not send it twice)
    assert swept == {"batches": 1, "batches_failed": 0}
    assert bulk.bulk_batches_sweep() == {"batches": 0, "batches_failed": 0}
    assert [args for args in _queued("orders", "orders.bulk_book") if args == [batch.pk]] == [[batch.pk]]

    # when the worker runs it
    tasks.bulk_book(batch.pk)

    # then the batch is Booked, and every valid row was booked exactly once
    batch.refresh_from_db()
    assert (batch.status, batch.booked, batch.processed) == (BulkStatus.BOOKED, 6, 6)
    booked = [row["orderId"] for row in batch.rows if not row["errors"]]
    assert len(booked) == len(set(booked)) == 6
    assert Order.objects.count() == 6
    assert {str(order_id) for order_id in Order.objects.values_list("order_id", flat=True)} == set(booked)
    assert booked[:3] == [row["orderId"] for row in interrupted[:3]]


def test_a_batch_left_validating_is_validated_by_the_sweep(market: Market) -> None:
    # given a batch whose validation task was never delivered (the broker was down at commit)
    rows = [*_rows(3, seed=5), {**_rows(1, seed=5)[0], "customerId": "000099"}]
    batch = BulkBatch.objects.create(
        source="lost.csv",
        rows=[{"line": line, "fields": fields, "errors": {}} for line, fields in enumerate(rows, start=1)],
        total=len(rows),
        created_by=_trader(),
    )
    assert batch.status == BulkStatus.VALIDATING

    # when the sweep finds it quiet past the grace period, and the worker runs what it sent
    _age(BulkBatch, [batch.pk])
    assert bulk.bulk_batches_sweep() == {"batches": 1, "batches_failed": 0}
    assert [args for args in _queued("orders", "orders.bulk_validate") if args == [batch.pk]] == [[batch.pk]]
    tasks.bulk_validate(batch.pk)

    # then it is validated and ready to book
    batch.refresh_from_db()
    assert (batch.status, batch.valid, batch.processed) == (BulkStatus.PREVIEW, 3, 4)
    assert batch.rows[3]["errors"] == {"customerId": ["Unknown customer '000099'."]}


def test_a_batch_that_never_resumes_ends_failed_with_its_reason_on_the_screen(market: Market, settings: Any) -> None:
    # given a batch left Booking whose resumed task dies every time
    settings.BULK_MAX_ATTEMPTS = 2
    batch = bulk.bulk_batch_create(rows=_rows(4, seed=9), source="doomed.csv", actor=_trader())
    BulkBatch.objects.filter(pk=batch.pk).update(status=BulkStatus.BOOKING, processed=2)

    # when the sweep resumes it as often as allowed, and then once more
    resumed = []
    for _ in range(settings.BULK_MAX_ATTEMPTS):
        _age(BulkBatch, [batch.pk])
        _age(BulkBatch, [batch.pk], field="swept_at")
        resumed.append(bulk.bulk_batches_sweep())
    _age(BulkBatch, [batch.pk])
    _age(BulkBatch, [batch.pk], field="swept_at")
    last = bulk.bulk_batches_sweep()

    # then it was resumed twice and then failed, with a reason
    assert resumed == [{"batches": 1, "batches_failed": 0}] * 2
    assert last == {"batches": 0, "batches_failed": 1}
    batch.refresh_from_db()
    assert batch.status == BulkStatus.FAILED
    assert "Booking stopped after 2 of 4 rows" in batch.failure_reason
    # and the screen shows the reason and stops polling
    trader = Client()
    assert trader.login(username="trader", password=PASSWORD)
    page = trader.get(reverse("orders:bulk-batch", args=[batch.batch_id])).content.decode()
    assert "Booking stopped after 2 of 4 rows" in page
    assert 'data-status="Failed"' in page
    assert "hx-trigger" not in page
    # and a failed batch is left alone
    _age(BulkBatch, [batch.pk])
    assert bulk.bulk_batches_sweep() == {"batches": 0, "batches_failed": 0}


def test_a_batch_that_fails_while_validating_shows_no_preview(market: Market, settings: Any) -> None:
    # given a batch left Validating that the sweep has already resumed as often as allowed
    settings.BULK_MAX_ATTEMPTS = 1
    batch = BulkBatch.objects.create(
        source="never.csv",
        rows=[{"line": 1, "fields": _rows(1, seed=2)[0], "errors": {}}],
        total=1,
        created_by=_trader(),
    )
    _age(BulkBatch, [batch.pk])
    assert bulk.bulk_batches_sweep() == {"batches": 1, "batches_failed": 0}

    # when it is still quiet at the next attempt
    _age(BulkBatch, [batch.pk])
    _age(BulkBatch, [batch.pk], field="swept_at")
    assert bulk.bulk_batches_sweep() == {"batches": 0, "batches_failed": 1}

    # then it failed with the step it stopped in, and the screen shows that, not an unchecked preview
    batch.refresh_from_db()
    assert batch.failure_reason.startswith("Validation stopped after 0 of 1 rows")
    trader = Client()
    assert trader.login(username="trader", password=PASSWORD)
    page = trader.get(reverse("orders:bulk-batch", args=[batch.batch_id])).content.decode()
    assert "Validation stopped after 0 of 1 rows" in page
    assert 'id="valid-count"' not in page
    assert "data-line=" not in page


def test_releasing_a_halt_makes_what_it_held_due_at_once(market: Market, settings: Any) -> None:
    # given a Day limit order held New by a ticker halt, re-sent by the sweeper until it backs off
    from orders import kill_switch
    from orders.models import HaltScope

    settings.SWEEP_AFTER_SECONDS = 10
    settings.SWEEP_BACKOFF_MAX_SECONDS = 60
    ticker = market["ticker"]
    held = place(quantity=100, price="260.00")
    kill_switch.halt_set(scope=HaltScope.TICKER, target_id=ticker.pk, active=True, reason="news", actor="ops")
    services.order_route(order_id=held.pk)
    _age(Order, [held.pk])
    assert services.orders_sweep()["orders"] == 1
    _age(Order, [held.pk], seconds=11, field="swept_at")
    assert services.orders_sweep()["orders"] == 1
    _age(Order, [held.pk], seconds=11, field="swept_at")
    assert services.orders_sweep()["orders"] == 0  # backed off: its next re-send waits two intervals

    # and a finished order the sweeper once re-sent (its `swept_at` stays after it moved on)
    finished = place("000003", quantity=100, price="260.00")  # refused by the halt: Rejected
    assert finished.is_final
    Order.objects.filter(pk=finished.pk).update(swept_at=timezone.now(), sweeps=3)

    # when the halt is released (its after-commit work run as the commit would)
    with transaction.atomic():
        kill_switch.halt_set(scope=HaltScope.TICKER, target_id=ticker.pk, active=False, reason="", actor="ops")
        callbacks = list(connection.run_on_commit)
    reset = services.sweep_backoff_reset()

    # then the held order is due for the very next sweep
    assert callbacks, "a release must schedule the reset after its commit"
    assert reset >= 1
    assert Order.objects.get(pk=held.pk).sweeps == 0
    assert Order.objects.get(pk=finished.pk).sweeps == 3  # only what is still stuck is touched
    assert services.orders_sweep()["orders"] == 1
