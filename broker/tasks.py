"""Celery tasks of market data, all on the `marketdata` queue (see CELERY_TASK_ROUTES).

A job is a chord: a group with one `fetch_ticker` per symbol, fetched in parallel, and `job_finish` as
the callback. A fetch never fails the chord: it retries its failed parts with backoff up to
MARKET_DATA_MAX_ATTEMPTS and then returns what it got, so the job ends `partial` instead of hanging.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import chord, group, shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from broker.marketdata import services
from broker.models import MarketDataJob

TRANSIENT = (OperationalError,)
STALLED_AFTER = timedelta(minutes=5)


def job_start(*, job_id: str) -> None:
    """Send a job's chord. Sending it again (resume) is harmless: fetches upsert, finishing is guarded."""
    job = MarketDataJob.objects.filter(job_id=job_id).first()
    if job is None:
        return
    header = group(fetch_ticker.s(job_id, symbol, list(job.parts)) for symbol in job.symbols)
    chord(header)(job_finish.s(job_id))


@shared_task(
    name="marketdata.fetch_ticker",
    bind=True,
    acks_late=True,
    ignore_result=False,  # the chord counts its header's results
    max_retries=None,  # bounded by MARKET_DATA_MAX_ATTEMPTS below
    time_limit=300,
    soft_time_limit=280,
)
def fetch_ticker(
    self: Any, job_id: str, symbol: str, parts: list[str], stored: dict[str, str] | None = None
) -> dict[str, Any]:
    attempt = self.request.retries + 1
    final = attempt >= settings.MARKET_DATA_MAX_ATTEMPTS
    outcome = services.ticker_fetch(symbol=symbol, parts=parts, job_id=job_id, attempt=attempt, final=final)
    stored = {**(stored or {}), **outcome.stored}
    retry = outcome.retryable_parts()
    if retry and not final:
        raise self.retry(
            args=(job_id, symbol, retry), kwargs={"stored": stored}, countdown=services.retry_delay(attempt)
        )
    return {"symbol": symbol, "stored": stored, "failed": {part: error.kind for part, error in outcome.failed.items()}}


@shared_task(name="marketdata.job_finish", acks_late=True, ignore_result=True, autoretry_for=TRANSIENT, max_retries=5)
def job_finish(results: list[dict[str, Any]], job_id: str) -> None:
    services.job_finish(job_id=job_id, results=results)


@shared_task(name="marketdata.refresh_quotes", acks_late=True, autoretry_for=TRANSIENT, max_retries=3)
def refresh_quotes() -> str | None:
    """Every minute while XNYS is open: last prices of every active ticker not backing off."""
    now = timezone.now()
    if not market_open(now):
        return None
    symbols = services.symbols_due_for_quotes(now=now)
    if not symbols:
        return None
    job = services.job_request(symbols=symbols, reason="schedule", requested_by="last prices", parts=["quote"])
    return str(job.job_id)


@shared_task(name="marketdata.refresh_closes", acks_late=True, autoretry_for=TRANSIENT, max_retries=3)
def refresh_closes() -> str | None:
    """After the close, several times: the day's bar and quote of every ticker still missing it."""
    session = last_closed_session(timezone.now())
    symbols = services.symbols_missing_close(session=session)
    if not symbols:
        return None
    job = services.job_request(symbols=symbols, reason="schedule", requested_by=f"closing prices {session}")
    return str(job.job_id)


@shared_task(name="marketdata.resume_jobs", acks_late=True, autoretry_for=TRANSIENT, max_retries=3)
def resume_jobs() -> int:
    """Start again the jobs whose chord never ran (broker down when they were requested, worker lost)."""
    stalled = services.jobs_stalled(older_than=STALLED_AFTER)
    for job_id in stalled:
        job_start(job_id=job_id)
    return len(stalled)


def market_open(now: Any) -> bool:
    import exchange_calendars
    import pandas

    calendar = exchange_calendars.get_calendar("XNYS")
    minute = pandas.Timestamp(now).tz_convert("UTC").floor("min")
    return bool(calendar.is_open_on_minute(minute))


def last_closed_session(now: Any) -> Any:
    """The date of the latest XNYS session that has closed at `now`."""
    import exchange_calendars
    import pandas

    calendar = exchange_calendars.get_calendar("XNYS")
    moment = pandas.Timestamp(now).tz_convert("UTC")
    day = moment.tz_localize(None).normalize()
    closes = calendar.closes[day - pandas.Timedelta(days=14) : day]
    return closes[closes <= moment].index[-1].date()
