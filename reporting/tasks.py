"""Celery tasks of reporting: thin, named wrappers around one service call each."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

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
