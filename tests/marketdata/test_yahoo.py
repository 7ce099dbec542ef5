"""Fetching from Yahoo through yfinance, against real recorded payloads served locally."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from broker.marketdata import services
from broker.marketdata.providers import SNAPSHOT_DIR, YahooProvider
from broker.models import MarketDataFailure, MarketDataJobState, PriceBar, Ticker
from pools import services as pool_services
from tests.conftest import Market, drive, make_ticker, place
from tests.marketdata.yahoo_server import YahooServer, chart_payload, fixture

pytestmark = pytest.mark.django_db


def six(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal("0.000001"))


def recorded_bars(symbol: str) -> dict[date, tuple[Decimal, int]]:
    """(close, volume) per New York date, straight from the recorded chart JSON."""
    import zoneinfo

    result = chart_payload(symbol)["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    zone = zoneinfo.ZoneInfo(result["meta"]["exchangeTimezoneName"])
    return {
        datetime.fromtimestamp(stamp, UTC).astimezone(zone).date(): (six(close), volume)
        for stamp, close, volume in zip(result["timestamp"], quote["close"], quote["volume"], strict=True)
    }


def job_for(*symbols: str, parts: tuple[str, ...] = services.PARTS):
    for symbol in symbols:
        Ticker.objects.get_or_create(symbol=symbol, defaults={"active": False})
    return services.job_request(symbols=list(symbols), reason="test", parts=parts, dispatch=False)


def test_msft_history_stores_the_recorded_bars_through_yfinance(yahoo: YahooServer) -> None:
    job = job_for("MSFT", parts=("history",))
    job = services.job_run_inline(job=job)

    assert job.state == MarketDataJobState.DONE
    recorded = recorded_bars("MSFT")
    stored = {bar.date: (bar.close, bar.volume) for bar in PriceBar.objects.filter(ticker__symbol="MSFT")}
    assert len(recorded) == 252
    assert stored == recorded
    # The same real closes and volumes as the shipped snapshot on those days.
    with (SNAPSHOT_DIR / "prices" / "MSFT.csv").open() as handle:
        shipped = {
            date.fromisoformat(row["date"]): (Decimal(row["close"]), int(row["volume"]))
            for row in csv.DictReader(handle)
            if date.fromisoformat(row["date"]) in stored
        }
    assert shipped == stored
    # yfinance made the requests (cookie, crumb, chart with its own parameters), not our code.
    assert any(path.startswith("/query1.finance.yahoo.com/v1/test/getcrumb") for path in yahoo.requests)
    chart = [path for path in yahoo.requests if "/v8/finance/chart/MSFT?" in path and "period1=" in path]
    assert chart
    assert "crumb=recorded-crumb" in chart[0]
    assert "events=div" in chart[0]


def test_quote_fields_come_from_the_recorded_quote_summary(yahoo: YahooServer) -> None:
    summary = fixture("v10_quoteSummary_ARMK_all-modules.json")["quoteSummary"]["result"][0]
    detail, financial = summary["summaryDetail"], summary["financialData"]
    job = services.job_run_inline(job=job_for("ARMK", parts=("quote",)))

    assert job.state == MarketDataJobState.DONE, job.results
    ticker = Ticker.objects.get(symbol="ARMK")
    assert ticker.name == summary["quoteType"]["longName"] == "Aramark"
    assert ticker.exchange == "NYSE"  # Yahoo's NYQ
    assert ticker.currency == detail["currency"]
    assert ticker.previous_close == Decimal(str(detail["previousClose"])).quantize(Decimal("0.0001"))
    assert ticker.day_high == Decimal(str(detail["dayHigh"])).quantize(Decimal("0.0001"))
    assert ticker.day_low == Decimal(str(detail["dayLow"])).quantize(Decimal("0.0001"))
    assert ticker.volume == detail["volume"]
    assert ticker.market_cap == detail["marketCap"]
    assert ticker.last_price == Decimal(str(financial["currentPrice"])).quantize(Decimal("0.0001"))
    # A symbol first seen through a fetch becomes tradable at its fetched price.
    assert ticker.reference_price == ticker.last_price
    assert ticker.active
    assert ticker.quote_source == "yahoo"
    assert ticker.quote_fetched_at
    assert not ticker.stale


def test_aapl_quote_and_history_from_recorded_modules(yahoo: YahooServer) -> None:
    job = services.job_run_inline(job=job_for("AAPL"))

    assert job.state == MarketDataJobState.DONE, job.results
    detail = fixture("quoteSummary-summaryDetail-AAPL.json")["response"]["bodyJson"]["quoteSummary"]["result"][0]
    ticker = Ticker.objects.get(symbol="AAPL")
    assert ticker.name == "Apple Inc."
    assert ticker.exchange == "NASDAQ"
    assert ticker.previous_close == Decimal(str(detail["summaryDetail"]["previousClose"])).quantize(Decimal("0.0001"))
    assert PriceBar.objects.filter(ticker=ticker).count() == len(recorded_bars("AAPL")) == 253


def test_unknown_symbol_is_recorded_once_and_not_retried(yahoo: YahooServer) -> None:
    job = services.job_run_inline(job=job_for("ZZZZ"), sleep=lambda seconds: None)

    assert job.state == MarketDataJobState.FAILED
    failures = {failure.what: failure for failure in MarketDataFailure.objects.filter(job=job)}
    assert set(failures) == {"quote", "history"}
    assert {failure.kind for failure in failures.values()} == {"unknown_symbol"}
    assert {failure.attempts for failure in failures.values()} == {1}
    ticker = Ticker.objects.get(symbol="ZZZZ")
    assert ticker.stale
    assert not ticker.active
    assert ticker.next_fetch_at is not None
    assert "ZZZZ" in job.results
    assert "unknown_symbol" in job.results["ZZZZ"]["quote"]


def test_refused_fetch_is_retried_with_backoff_then_recorded_and_a_later_fetch_recovers(
    yahoo: YahooServer, market: Market
) -> None:
    make_ticker("MSFT", "404.52")
    msft = Ticker.objects.get(symbol="MSFT")
    pool_services.books_ensure(ticker_id=msft.pk)
    yahoo.stop()  # connections refused from now on
    delays: list[float] = []

    job = services.job_run_inline(job=job_for("MSFT", parts=("history",)), sleep=delays.append)

    assert job.state == MarketDataJobState.FAILED
    failure = MarketDataFailure.objects.get(job=job)
    assert (failure.symbol, failure.what, failure.kind, failure.attempts) == ("MSFT", "history", "network", 4)
    assert failure.resolved_at is None
    assert delays == [services.retry_delay(1), services.retry_delay(2), services.retry_delay(3)]
    assert delays[0] < delays[1] < delays[2]
    msft.refresh_from_db()
    assert msft.stale
    assert msft.consecutive_failures == 1

    # The order flow goes on with the last known reference price.
    order = place(ticker="MSFT", direction="Buy", type="Limit", quantity=300, price="420.00")
    drive(order)
    assert order.status == "Filled"

    yahoo.start()  # same port: the gateway answers again
    later = services.job_run_inline(job=job_for("MSFT", parts=("history",)))

    assert later.state == MarketDataJobState.DONE
    failure.refresh_from_db()
    msft.refresh_from_db()
    assert failure.resolved_at is not None
    assert not msft.stale
    assert msft.consecutive_failures == 0
    assert msft.next_fetch_at is None
    assert PriceBar.objects.filter(ticker=msft).count() == 252


def test_a_gateway_that_does_not_answer_in_time_is_a_timeout(yahoo: YahooServer, settings: Any) -> None:
    settings.MARKET_DATA_MAX_ATTEMPTS = 2
    yahoo.mode, yahoo.delay = "slow", 2.0  # MARKET_DATA_TIMEOUT is 1 s here
    job = services.job_run_inline(job=job_for("ARMK", parts=("quote",)), sleep=lambda seconds: None)

    failure = MarketDataFailure.objects.get(job=job)
    assert failure.kind == "timeout", failure.error
    assert failure.attempts == 2
    assert job.state == MarketDataJobState.FAILED


def test_without_a_gateway_tests_never_reach_the_internet(settings: Any) -> None:
    settings.YAHOO_GATEWAY_URL = ""
    settings.BROKER_OFFLINE = True
    Ticker.objects.create(symbol="MSFT")
    outcome = services.ticker_fetch(symbol="MSFT", parts=["history"], provider=YahooProvider())
    assert outcome.failed["history"].kind == "network"
    assert "BROKER_OFFLINE" in outcome.failed["history"].message


def test_fetch_market_data_command_uses_yfinance_and_fails_loudly(yahoo: YahooServer) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("fetch_market_data", "aapl", stdout=out)
    assert "AAPL history: 253 bars 2020-01-02..2020-12-31" in out.getvalue()
    assert Ticker.objects.get(symbol="AAPL").active

    with pytest.raises(CommandError, match="failed"):
        call_command("fetch_market_data", "ZZZZ", stdout=StringIO())
    assert MarketDataFailure.objects.filter(symbol="ZZZZ", kind="unknown_symbol").count() == 2
