"""Issue 10, item 4, last line of defence: a cancel or a trade correction that Postgres picks as a
deadlock victim runs its transaction again and answers 200, never 500.

The services take their locks in one global order, so they do not deadlock with each other (see
tests/integration/test_deadlocks.py); here the other side is a session outside the services (an
operator's SQL) that takes the order's reservation and then the order, against that order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from orders.models import Order, OrderStatus, Trade
from tests.conftest import Market, client_for, drive, place, staff_client

pytestmark = pytest.mark.django_db(transaction=True)


def _operator_session(order_id: int, outcome: list[str], *, rounds: int = 1) -> threading.Thread:
    """Holds the order's reservation until our request queues behind it, then asks for the order row
    itself: a lock cycle. Its deadlock_timeout is the longer one, so Postgres rolls back our request.
    With `rounds` > 1 it lets go of the order (a savepoint) and does it again to the request's retry."""

    def run() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL deadlock_timeout = '30s'")
                cursor.execute("UPDATE settlement_reservation SET pending = pending WHERE order_ref = %s", [order_id])
                for _ in range(rounds):
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        cursor.execute(
                            "SELECT count(*) FROM pg_locks"
                            " WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                        )
                        (waiting,) = cursor.fetchone()
                        if waiting:
                            break
                        time.sleep(0.02)
                    cursor.execute("SAVEPOINT operator")
                    cursor.execute("SELECT id FROM orders_order WHERE id = %s FOR UPDATE", [order_id])
                    cursor.execute("ROLLBACK TO SAVEPOINT operator")
            outcome.append("committed")
        except Exception as error:  # the thread's result is asserted by the test
            outcome.append(repr(error))
        finally:
            connection.close()

    return threading.Thread(target=run)


def _while_an_operator_session_deadlocks(
    order_id: int, request: Callable[[], object], *, rounds: int = 1
) -> tuple[object, list[str]]:
    outcome: list[str] = []
    session = _operator_session(order_id, outcome, rounds=rounds)
    session.start()
    # The session holds the reservation before the request starts (its first statement is quick).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'settlement_reservation' AND l.mode = 'RowExclusiveLock' AND l.granted"
            )
            (held,) = cursor.fetchone()
        if held:
            break
        time.sleep(0.02)
    response = request()
    session.join(timeout=60)
    return response, outcome


def test_a_cancel_chosen_as_deadlock_victim_runs_again_and_answers_200(
    market: Market, caplog: pytest.LogCaptureFixture
) -> None:
    # given a resting buy of the customer
    order = place(quantity=100, price="200.00")
    drive(order)
    assert order.status == OrderStatus.ROUTED
    client: APIClient = client_for("000002")

    # when the customer cancels it while another session holds its reservation and then asks for the order
    with caplog.at_level(logging.WARNING, logger="broker.transactions"):
        response, outcome = _while_an_operator_session_deadlocks(
            order.pk, lambda: client.post(f"/api/orders/{order.order_id}/cancel")
        )

    # then the cancel lost the deadlock once, ran again and succeeded; the other session committed
    assert "lost a lock conflict" in caplog.text
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert outcome == ["committed"]
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_a_correction_chosen_as_deadlock_victim_runs_again_and_answers_200(
    market: Market, caplog: pytest.LogCaptureFixture
) -> None:
    # given a filled buy whose trade is not settled yet (its cost is pending on the reservation)
    order = place(quantity=100, price="260.00")
    drive(order)
    assert order.status == OrderStatus.FILLED
    trade = Trade.objects.get(order=order)
    assert trade.settlement_date is None
    staff: APIClient = staff_client()

    # when staff lower its quantity while another session holds the reservation and then asks for the order
    with caplog.at_level(logging.WARNING, logger="broker.transactions"):
        response, outcome = _while_an_operator_session_deadlocks(
            order.pk,
            lambda: staff.post(
                f"/api/trades/{trade.trade_id}/amend", {"quantity": 99, "reason": "short fill"}, format="json"
            ),
        )

    # then the correction lost the deadlock once, ran again and was applied once
    assert "lost a lock conflict" in caplog.text
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert outcome == ["committed"]
    trade.refresh_from_db()
    assert (trade.quantity, trade.version) == (99, 2)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED


def test_a_cancel_that_keeps_losing_deadlocks_answers_503_with_retry_after(
    market: Market, caplog: pytest.LogCaptureFixture
) -> None:
    # given a resting buy of the customer
    order = place(quantity=100, price="200.00")
    drive(order)
    client: APIClient = client_for("000002")

    # when every try of its cancel (three) meets the other session's lock cycle
    with caplog.at_level(logging.WARNING, logger="broker.transactions"):
        response, outcome = _while_an_operator_session_deadlocks(
            order.pk, lambda: client.post(f"/api/orders/{order.order_id}/cancel"), rounds=3
        )

    # then it answers 503 with Retry-After, not 500, and the order is untouched
    assert caplog.text.count("lost a lock conflict") == 3
    assert response.status_code == 503  # type: ignore[attr-defined]
    assert response["Retry-After"] == "1"  # type: ignore[index]
    assert outcome == ["committed"]
    order.refresh_from_db()
    assert order.status == OrderStatus.ROUTED
