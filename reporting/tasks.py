"""Celery tasks of reporting: thin, named wrappers around one service call each."""

from __future__ import annotations

from datetime import date, timedelta

from celery import shared_task
from django.db import OperationalError, connection, transaction

from reporting import aggregation
from reporting.reconciliation import reconciliation_run


@shared_task(
    name="reporting.reconcile",
    acks_late=True,
    autoretry_for=(OperationalError,),  # a dropped connection; a re-run only records another run
    retry_backoff=True,
    max_retries=3,
    time_limit=1800,
    soft_time_limit=1740,
)
def reconcile() -> int:
    # Nightly from Celery beat (reporting/migrations/0002_reconcile_schedule.py), on the `reporting` queue.
    return reconciliation_run(triggered_by="beat").pk


def nightly_aggregate() -> list[date]:
    """Yesterday and today in New York, among the days reports cover (sessions and traded days): a
    second pass makes yesterday final (trading goes on after the run), today stays provisional."""
    today = aggregation.today()
    days = aggregation.days_to_report(today - timedelta(days=1), today)
    aggregation.days_aggregate(days)
    return days


def correction_reaggregate(*, day: date) -> int:
    """A trade of `day` was corrected: recompute `day` and every stored day after it, if any is stored.

    With nothing stored from `day` on, nothing is stale, and aggregating `day` would only store a day
    nobody asked for yet. The check runs under the aggregation lock: an aggregation that read the trade
    before the correction committed has finished (and its day is stored) by the time it is made.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [aggregation.AGGREGATION_LOCK])
        if not aggregation.stored_days_from(day):
            return 0
        return aggregation.days_after_correction(day)


@shared_task(
    name="reporting.aggregate_nightly",
    acks_late=True,
    autoretry_for=(OperationalError,),  # a dropped connection; every day is recomputed in place
    retry_backoff=True,
    max_retries=3,
    time_limit=1800,
    soft_time_limit=1740,
)
def aggregate_nightly() -> list[str]:
    # Daily after the XNYS close from Celery beat (reporting/migrations/0004_aggregation_schedule.py).
    return [day.isoformat() for day in nightly_aggregate()]


@shared_task(
    name="reporting.reaggregate_from",
    acks_late=True,
    autoretry_for=(OperationalError,),  # a dropped connection; every day is recomputed in place
    retry_backoff=True,
    max_retries=3,
    time_limit=1800,
    soft_time_limit=1740,
)
def reaggregate_from(day_iso: str) -> int:
    # Sent by name after a trade correction or bust commits (orders/services/corrections.py).
    return correction_reaggregate(day=date.fromisoformat(day_iso))
