"""Reads of market data for the API, the screens and the reports."""

from __future__ import annotations

from datetime import date, timedelta

from django.db.models import Max, QuerySet

from broker.exceptions import NotFound
from broker.models import MarketDataJob, PriceBar, Ticker

DEFAULT_HISTORY_DAYS = 365


def ticker_get(*, symbol: str) -> Ticker:
    ticker = Ticker.objects.filter(symbol=symbol.upper()).first()
    if ticker is None:
        raise NotFound(f"No ticker {symbol!r}.")
    return ticker


def tickers_list() -> QuerySet[Ticker]:
    return Ticker.objects.order_by("symbol")


def history_window(*, ticker: Ticker, start: date | None, end: date | None) -> tuple[date | None, date | None]:
    """The requested window; by default the year up to the last stored bar."""
    if end is None:
        end = PriceBar.objects.filter(ticker=ticker).aggregate(last=Max("date"))["last"]
    if start is None and end is not None:
        start = end - timedelta(days=DEFAULT_HISTORY_DAYS)
    return start, end


def history(*, ticker: Ticker, start: date, end: date) -> QuerySet[PriceBar]:
    return PriceBar.objects.filter(ticker=ticker, date__gte=start, date__lte=end).order_by("date")


def closes(*, symbol: str, start: date, end: date) -> list[tuple[date, object]]:
    """(date, close) pairs for charts and valuations."""
    return list(
        PriceBar.objects.filter(ticker__symbol=symbol, date__gte=start, date__lte=end)
        .order_by("date")
        .values_list("date", "close")
    )


def job_get(*, job_id: str) -> MarketDataJob:
    job = MarketDataJob.objects.prefetch_related("failures").filter(job_id=job_id).first()
    if job is None:
        raise NotFound(f"No market-data job {job_id}.")
    return job
