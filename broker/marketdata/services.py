"""Writes of market data: quotes on `Ticker`, daily `PriceBar`s, fetch jobs and their failures.

Network calls happen outside any transaction: a slow Yahoo never holds a row lock. Every write is an
upsert or a guarded state change, so a task that runs twice stores the same thing once.
"""

from __future__ import annotations

import re
import uuid
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from broker.exceptions import ValidationFailed
from broker.marketdata.providers import Bar, Provider, ProviderError, Quote, SnapshotProvider, provider_get
from broker.models import FetchPart, MarketDataFailure, MarketDataJob, MarketDataJobState, PriceBar, Ticker
from broker.text import Text

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
SYMBOL = re.compile(r"[A-Z][A-Z0-9.\-^=]{0,11}")  # fullmatch: `$` would also accept a trailing newline
MAX_JOB_SYMBOLS = 100
SYMBOL_TEXT = Text.of(Ticker, "symbol")
BAR_BATCH = 1000
PARTS = (FetchPart.QUOTE.value, FetchPart.HISTORY.value)
REFERENCE_PLACES = Decimal("0.0001")


# --- storing -----------------------------------------------------------------------------------------


def bars_upsert(*, ticker: Ticker, bars: Sequence[Bar], source: str) -> int:
    """Insert or overwrite the bars of `ticker` (one per date), in batches. Returns how many were written."""
    rows = [
        PriceBar(
            ticker=ticker,
            date=bar.date,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            adj_close=bar.adj_close,
            volume=bar.volume,
            source=source,
        )
        for bar in bars
    ]
    with transaction.atomic():
        PriceBar.objects.bulk_create(
            rows,
            batch_size=BAR_BATCH,
            update_conflicts=True,
            unique_fields=["ticker", "date"],
            update_fields=["open", "high", "low", "close", "adj_close", "volume", "source"],
        )
        Ticker.objects.filter(pk=ticker.pk).update(history_fetched_at=timezone.now())
    return len(rows)


def quote_store(*, symbol: str, quote: Quote, source: str, as_of: date) -> Ticker:
    """Store a fetched quote and make its price the ticker's reference price; clears any staleness.

    The reference price is what the order flow uses (collars, simulated liquidity, valuation): it
    follows the market data but never waits for it.
    """
    with transaction.atomic():
        ticker = Ticker.objects.select_for_update(no_key=True).get(symbol=symbol)
        price = quote.last_price or quote.previous_close
        ticker.name = quote.name or ticker.name
        ticker.exchange = quote.exchange or ticker.exchange
        ticker.currency = quote.currency or ticker.currency
        ticker.last_price = _reference(quote.last_price)
        ticker.previous_close = _reference(quote.previous_close)
        ticker.day_high = _reference(quote.day_high)
        ticker.day_low = _reference(quote.day_low)
        ticker.volume = quote.volume
        ticker.market_cap = quote.market_cap
        ticker.quote_source = source
        ticker.quote_fetched_at = timezone.now()
        if price is not None:
            ticker.reference_price = _reference(price)
            ticker.reference_date = as_of
            ticker.active = True  # a symbol first seen through a fetch becomes tradable once it has a price
        ticker.save()
        _recovered(ticker=ticker, what=FetchPart.QUOTE)
    return ticker


def _reference(value: Decimal | None) -> Decimal | None:
    return value.quantize(REFERENCE_PLACES) if value is not None else None


def _recovered(*, ticker: Ticker, what: str) -> None:
    """A part fetched fine: its open failures are resolved, and the ticker is fresh when none is left open."""
    now = timezone.now()
    MarketDataFailure.objects.filter(symbol=ticker.symbol, what=what, resolved_at__isnull=True).update(resolved_at=now)
    if not MarketDataFailure.objects.filter(symbol=ticker.symbol, resolved_at__isnull=True).exists():
        Ticker.objects.filter(pk=ticker.pk).update(stale=False, consecutive_failures=0, next_fetch_at=None)


def snapshot_load(*, symbols: Iterable[str] | None = None) -> dict[str, int]:
    """Tickers, quotes and every daily bar from the shipped snapshot. Idempotent; returns bars per symbol."""
    provider = SnapshotProvider()
    loaded = {}
    for symbol in provider.symbols() if symbols is None else symbols:
        bars = provider.bars(symbol)
        quote = provider.quote(symbol)
        Ticker.objects.get_or_create(symbol=symbol, defaults={"name": quote.name, "exchange": quote.exchange})
        ticker = quote_store(symbol=symbol, quote=quote, source=provider.name, as_of=bars[-1].date)
        loaded[symbol] = bars_upsert(ticker=ticker, bars=bars, source=provider.name)
    return loaded


# --- fetching ----------------------------------------------------------------------------------------


@dataclass
class FetchOutcome:
    symbol: str
    stored: dict[str, str] = field(default_factory=dict)  # part -> what was stored
    failed: dict[str, ProviderError] = field(default_factory=dict)

    def retryable_parts(self) -> list[str]:
        return [part for part, error in self.failed.items() if error.retryable]


def ticker_fetch(
    *,
    symbol: str,
    parts: Sequence[str] = PARTS,
    job_id: str | None = None,
    attempt: int = 1,
    final: bool = True,
    provider: Provider | None = None,
) -> FetchOutcome:
    """Fetch and store `parts` of one ticker's data; hand each failure to `fetch_failure_record`."""
    provider = provider or provider_get()
    outcome = FetchOutcome(symbol=symbol)
    ticker = Ticker.objects.filter(symbol=symbol).first()
    if ticker is None:  # removed since the job was requested: a failure to record, not a crash
        for part in parts:
            outcome.failed[part] = ProviderError("unknown_symbol", f"{symbol} is no longer a ticker here")
            fetch_failure_record(
                job_id=job_id, symbol=symbol, what=part, error=outcome.failed[part], attempt=attempt, final=True
            )
        return outcome
    for part in parts:
        try:
            if part == FetchPart.QUOTE:
                quote = provider.quote(symbol)
                quote_store(
                    symbol=symbol, quote=quote, source=provider.name, as_of=timezone.now().astimezone(NEW_YORK).date()
                )
                outcome.stored[part] = f"last price {quote.last_price or quote.previous_close}"
            else:
                start, end = _history_window(ticker)
                bars = provider.history(symbol, start, end)
                written = bars_upsert(ticker=ticker, bars=bars, source=provider.name)
                _recovered(ticker=ticker, what=FetchPart.HISTORY)
                outcome.stored[part] = f"{written} bars {bars[0].date}..{bars[-1].date}"
        except ProviderError as error:
            outcome.failed[part] = error
            fetch_failure_record(
                job_id=job_id,
                symbol=symbol,
                what=part,
                error=error,
                attempt=attempt,
                final=final or not error.retryable,
            )
    return outcome


def _history_window(ticker: Ticker) -> tuple[date, date]:
    today = timezone.now().astimezone(NEW_YORK).date()
    last = PriceBar.objects.filter(ticker=ticker).aggregate(last=Max("date"))["last"]
    if last is None:
        return today - timedelta(days=settings.MARKET_DATA_HISTORY_DAYS), today
    # A week of overlap: Yahoo revises the latest bars (late prints, dividend adjustments).
    return min(last - timedelta(days=7), today), today


def retry_delay(attempt: int) -> float:
    """Seconds before try `attempt + 1`: exponential backoff from MARKET_DATA_RETRY_BACKOFF."""
    return float(settings.MARKET_DATA_RETRY_BACKOFF * 2 ** (attempt - 1))


def fetch_failure_record(
    *, job_id: str | None, symbol: str, what: str, error: ProviderError, attempt: int, final: bool
) -> MarketDataFailure:
    """The error handler: record the failure, mark the ticker stale, and back its next fetch off.

    One record per job, ticker and part, whose `attempts` counts the tries; staff see it in admin.
    """
    job = MarketDataJob.objects.filter(job_id=job_id).first() if job_id else None
    now = timezone.now()
    with transaction.atomic():
        ticker = Ticker.objects.select_for_update(no_key=True).filter(symbol=symbol).first()
        values = {"kind": error.kind, "error": error.message[:2000], "attempts": attempt, "resolved_at": None}
        if job is not None:
            failure, _ = MarketDataFailure.objects.update_or_create(job=job, symbol=symbol, what=what, defaults=values)
        else:
            failure = MarketDataFailure.objects.create(job=None, symbol=symbol, what=what, **values)
        if ticker is not None:
            ticker.stale = True
            if final:
                # Ticker-level backoff for the schedules: 1, 2, 4 ... minutes, at most an hour.
                ticker.consecutive_failures += 1
                wait = min(60 * 2 ** (ticker.consecutive_failures - 1), 3600)
                ticker.next_fetch_at = now + timedelta(seconds=wait)
            ticker.save(update_fields=["stale", "consecutive_failures", "next_fetch_at"])
    return failure


# --- jobs --------------------------------------------------------------------------------------------


def parse_symbols(raw: Any) -> list[str]:
    """`{"tickers": [...]}`'s list, upper-cased and de-duplicated, or a 400 naming what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed({"tickers": ['Give a non-empty list of ticker symbols, like ["AAPL", "MSFT"].']})
    if len(raw) > MAX_JOB_SYMBOLS:
        raise ValidationFailed({"tickers": [f"At most {MAX_JOB_SYMBOLS} tickers per request."]})
    symbols: list[str] = []
    bad = []
    for item in raw:
        # Control characters are refused before strip() could hide a trailing newline.
        symbol = item.strip().upper() if isinstance(item, str) and SYMBOL_TEXT.problem(item) is None else ""
        if not SYMBOL.fullmatch(symbol):
            bad.append(repr(item))
        elif symbol not in symbols:
            symbols.append(symbol)
    if bad:
        raise ValidationFailed({"tickers": [f"Not a ticker symbol: {', '.join(bad)}."]})
    return symbols


def job_request(
    *,
    symbols: Sequence[str],
    reason: str,
    requested_by: str = "",
    parts: Sequence[str] = PARTS,
    create_unknown: bool = False,
    dispatch: bool = True,
) -> MarketDataJob:
    """Record a fetch job and, once committed, start it as a Celery chord on the `marketdata` queue.

    Unknown symbols are refused, or created as inactive tickers when `create_unknown` (staff): a
    successful quote fetch makes them tradable.
    """
    known = set(Ticker.objects.filter(symbol__in=symbols).values_list("symbol", flat=True))
    unknown = [symbol for symbol in symbols if symbol not in known]
    if unknown and not create_unknown:
        raise ValidationFailed({"tickers": [f"Unknown ticker(s): {', '.join(unknown)}."]})
    with transaction.atomic():
        for symbol in unknown:
            Ticker.objects.get_or_create(symbol=symbol, defaults={"active": False, "stale": True})
        job = MarketDataJob.objects.create(
            job_id=uuid.uuid4(), symbols=list(symbols), parts=list(parts), reason=reason, requested_by=requested_by
        )
        if dispatch:
            job_id = str(job.job_id)
            # robust: the job is recorded even when the broker is down; `jobs_resume` starts it later.
            transaction.on_commit(lambda: _dispatch(job_id), robust=True)
    return job


def _dispatch(job_id: str) -> None:
    from broker import tasks

    tasks.job_start(job_id=job_id)


def job_finish(*, job_id: str, results: Sequence[dict[str, Any]] | None = None) -> MarketDataJob:
    """Close a job from what its fetches stored and which failures are still open. Idempotent."""
    with transaction.atomic():
        job = MarketDataJob.objects.select_for_update(no_key=True).get(job_id=job_id)
        if job.state != MarketDataJobState.PENDING:
            return job
        open_failures = {
            (failure.symbol, failure.what): failure
            for failure in MarketDataFailure.objects.filter(job=job, resolved_at__isnull=True)
        }
        by_symbol = {result["symbol"]: result for result in results or [] if isinstance(result, dict)}
        summary: dict[str, dict[str, str]] = {}
        for symbol in job.symbols:
            stored = by_symbol.get(symbol, {}).get("stored", {})
            summary[symbol] = {}
            for part in job.parts:
                failure = open_failures.get((symbol, part))
                if failure is not None:
                    summary[symbol][part] = (
                        f"failed after {failure.attempts} attempt(s): {failure.kind}: {failure.error}"
                    )
                else:
                    summary[symbol][part] = stored.get(part, "ok")
        failed = len(open_failures)
        total = len(job.symbols) * len(job.parts)
        job.state = (
            MarketDataJobState.DONE
            if failed == 0
            else MarketDataJobState.FAILED
            if failed >= total
            else MarketDataJobState.PARTIAL
        )
        job.results = summary
        job.finished_at = timezone.now()
        job.save(update_fields=["state", "results", "finished_at"])
    return job


def job_run_inline(*, job: MarketDataJob, provider: Provider | None = None, sleep: Any = None) -> MarketDataJob:
    """Run a job in this process, with the same attempts and backoff the workers use (the command's path)."""
    import time

    sleep = sleep or time.sleep
    results = []
    for symbol in job.symbols:
        parts = list(job.parts)
        stored: dict[str, str] = {}
        for attempt in range(1, settings.MARKET_DATA_MAX_ATTEMPTS + 1):
            final = attempt == settings.MARKET_DATA_MAX_ATTEMPTS
            outcome = ticker_fetch(
                symbol=symbol, parts=parts, job_id=str(job.job_id), attempt=attempt, final=final, provider=provider
            )
            stored.update(outcome.stored)
            parts = outcome.retryable_parts()
            if not parts:
                break
            if not final:
                sleep(retry_delay(attempt))
        results.append({"symbol": symbol, "stored": stored})
    return job_finish(job_id=str(job.job_id), results=results)


# --- what is due -------------------------------------------------------------------------------------


def needs_refresh(ticker: Ticker, *, now: datetime) -> bool:
    """Whether an order for `ticker` should ask for fresh data: missing or stale, and not backing off."""
    if ticker.next_fetch_at and ticker.next_fetch_at > now:
        return False
    horizon = now - timedelta(seconds=settings.MARKET_DATA_STALE_AFTER)
    if ticker.fetch_requested_at and ticker.fetch_requested_at > horizon:
        return False  # one request at a time
    return ticker.quote_fetched_at is None or ticker.stale or ticker.quote_fetched_at < horizon


def ticker_refresh_for_order(*, ticker_id: int) -> MarketDataJob | None:
    """An order named a ticker whose data is missing or stale: ask for it, once, without waiting."""
    now = timezone.now()
    ticker = Ticker.objects.filter(pk=ticker_id).first()
    if ticker is None or not needs_refresh(ticker, now=now):
        return None
    horizon = now - timedelta(seconds=settings.MARKET_DATA_STALE_AFTER)
    claimed = (
        Ticker.objects.filter(pk=ticker_id)
        .filter(Q(fetch_requested_at__isnull=True) | Q(fetch_requested_at__lte=horizon))
        .update(fetch_requested_at=now)
    )
    if not claimed:
        return None  # a concurrent order asked first
    return job_request(symbols=[ticker.symbol], reason="order", requested_by="order flow")


def symbols_due_for_quotes(*, now: datetime) -> list[str]:
    """Active tickers whose quote may be refreshed now (those backing off after failures wait)."""
    return list(
        Ticker.objects.filter(active=True)
        .filter(Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now))
        .values_list("symbol", flat=True)
    )


def symbols_missing_close(*, session: date) -> list[str]:
    """Active tickers without a bar for `session`: the after-close fetch asks again until they have one."""
    return list(Ticker.objects.filter(active=True).exclude(bars__date=session).values_list("symbol", flat=True))


def jobs_stalled(*, older_than: timedelta, given_up_after: timedelta = timedelta(hours=1)) -> list[str]:
    """Jobs still pending long after their fetches should have finished (broker down, worker lost).

    A job still pending after `given_up_after` is closed as it stands instead: resuming it forever
    would hide whatever keeps it from finishing (its open failures say what is known).
    """
    now = timezone.now()
    pending = MarketDataJob.objects.filter(state=MarketDataJobState.PENDING, created_at__lt=now - older_than)
    for job_id in pending.filter(created_at__lt=now - given_up_after).values_list("job_id", flat=True):
        job_finish(job_id=str(job_id))
    return [str(job_id) for job_id in pending.values_list("job_id", flat=True)]
