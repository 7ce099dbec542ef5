"""The shipped snapshot, the ticker and market-data endpoints, schedules, and the order flow's requests."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from broker import tasks
from broker.marketdata import services
from broker.marketdata.providers import SNAPSHOT_DIR
from broker.models import MarketDataJob, MarketDataJobState, PriceBar, Ticker
from tests.conftest import Market, client_for, make_customers, place, staff_client

pytestmark = pytest.mark.django_db


def shipped(symbol: str) -> list[dict[str, str]]:
    with (SNAPSHOT_DIR / "prices" / f"{symbol}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_load_market_data_imports_every_shipped_bar_once() -> None:
    call_command("load_market_data", stdout=StringIO())
    call_command("load_market_data", stdout=StringIO())  # idempotent

    symbols = sorted(path.stem for path in (SNAPSHOT_DIR / "prices").glob("*.csv"))
    assert len(symbols) == 20
    for symbol in symbols:
        rows = shipped(symbol)
        ticker = Ticker.objects.get(symbol=symbol)
        assert PriceBar.objects.filter(ticker=ticker).count() == len(rows)
        assert ticker.reference_price == Decimal(rows[-1]["close"]).quantize(Decimal("0.0001"))
        assert ticker.reference_date == date.fromisoformat(rows[-1]["date"])
        assert ticker.previous_close == Decimal(rows[-2]["close"]).quantize(Decimal("0.0001"))
        assert ticker.quote_source == "snapshot"


def test_history_endpoint_returns_exactly_the_shipped_closes() -> None:
    call_command("seed_demo", stdout=StringIO())
    client = client_for("000002")

    response = client.get("/api/tickers/AAPL/history", {"start": "2024-03-04", "end": "2024-03-08"})

    assert response.status_code == 200
    body = response.json()
    expected = [row for row in shipped("AAPL") if "2024-03-04" <= row["date"] <= "2024-03-08"]
    assert [bar["date"] for bar in body["bars"]] == [row["date"] for row in expected]
    for bar, row in zip(body["bars"], expected, strict=True):
        for key, column in [
            ("open", "open"),
            ("high", "high"),
            ("low", "low"),
            ("close", "close"),
            ("adjClose", "adj_close"),
        ]:
            assert Decimal(bar[key]) == Decimal(row[column])
        assert bar["volume"] == int(row["volume"])
    assert body["bars"][-1]["close"] == "170.729996"  # AAPL's real close on 2024-03-08, as shipped


def test_seed_demo_keeps_quotes_fetched_since() -> None:
    call_command("seed_demo", stdout=StringIO())
    Ticker.objects.filter(symbol="AAPL").update(reference_price=Decimal("229.87"), quote_source="yahoo")
    call_command("seed_demo", stdout=StringIO())
    assert Ticker.objects.get(symbol="AAPL").reference_price == Decimal("229.87")


def test_ticker_endpoints_show_quote_summary_and_freshness() -> None:
    services.snapshot_load(symbols=["MSFT", "SPY"])
    make_customers()
    client = client_for("000002")

    listing = client.get("/api/tickers").json()
    assert [row["symbol"] for row in listing["results"]] == ["MSFT", "SPY"]
    detail = client.get("/api/tickers/msft").json()
    rows = shipped("MSFT")
    assert detail["symbol"] == "MSFT"
    assert detail["name"] == "Microsoft"
    assert Decimal(detail["lastPrice"]) == Decimal(rows[-1]["close"]).quantize(Decimal("0.0001"))
    assert Decimal(detail["previousClose"]) == Decimal(rows[-2]["close"]).quantize(Decimal("0.0001"))
    assert Decimal(detail["dayHigh"]) == Decimal(rows[-1]["high"]).quantize(Decimal("0.0001"))
    assert detail["volume"] == int(rows[-1]["volume"])
    assert detail["stale"] is False
    assert detail["fetchedAt"].endswith("Z")
    for key in ["exchange", "currency", "dayLow", "marketCap"]:
        assert key in detail

    assert client.get("/api/tickers/NOPE").status_code == 404
    # Default window: the year up to the last bar.
    default = client.get("/api/tickers/MSFT/history").json()
    assert default["end"] == rows[-1]["date"]
    assert date.fromisoformat(default["start"]) == date.fromisoformat(rows[-1]["date"]) - timedelta(days=365)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2024-13-01"}, "start"),
        ({"end": "yesterday"}, "end"),
        ({"start": "2024-03-08", "end": "2024-03-01"}, "start"),
    ],
)
def test_history_refuses_bad_dates_by_name(params: dict[str, str], field: str) -> None:
    services.snapshot_load(symbols=["MSFT"])
    make_customers()
    response = client_for("000002").get("/api/tickers/MSFT/history", params)
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize(
    "body",
    [{}, {"tickers": []}, {"tickers": "AAPL"}, {"tickers": ["AAPL", "not a symbol!"]}, {"tickers": [7]}],
)
def test_market_data_request_refuses_bad_bodies(body: dict[str, Any]) -> None:
    make_customers()
    response = client_for("000002").post("/api/market-data", body, format="json")
    assert response.status_code == 400
    assert "tickers" in response.json()
    assert not MarketDataJob.objects.exists()


def test_a_client_refreshes_listed_tickers_and_staff_may_add_new_ones() -> None:
    services.snapshot_load(symbols=["MSFT"])
    make_customers()

    refused = client_for("000002").post("/api/market-data", {"tickers": ["MSFT", "ARMK"]}, format="json")
    assert refused.status_code == 400
    assert "ARMK" in refused.json()["tickers"][0]

    accepted = client_for("000002").post("/api/market-data", {"tickers": ["msft"]}, format="json")
    assert accepted.status_code == 202
    job = accepted.json()
    assert job["state"] == "pending"
    assert job["tickers"] == ["MSFT"]
    assert accepted["Location"] == f"/api/market-data/{job['jobId']}"

    staff = staff_client().post("/api/market-data", {"tickers": ["ARMK"]}, format="json")
    assert staff.status_code == 202
    armk = Ticker.objects.get(symbol="ARMK")
    assert not armk.active  # tradable only once a quote arrives

    fetched = staff_client().get(f"/api/market-data/{job['jobId']}").json()
    assert fetched["jobId"] == job["jobId"]
    assert staff_client().get("/api/market-data/00000000-0000-0000-0000-000000000000").status_code == 404


def test_job_finish_is_idempotent_and_names_failures() -> None:
    services.snapshot_load(symbols=["MSFT"])
    Ticker.objects.create(symbol="ZZZZ", active=False)
    job = services.job_request(symbols=["MSFT", "ZZZZ"], reason="test", dispatch=False)
    finished = services.job_run_inline(job=job, provider=services.SnapshotProvider(), sleep=lambda seconds: None)

    assert finished.state == MarketDataJobState.PARTIAL
    # History already stored: the fetch asks from a week before the last bar (Yahoo revises recent bars).
    assert finished.results["MSFT"]["history"] == "6 bars 2024-03-01..2024-03-08"
    assert "unknown_symbol" in finished.results["ZZZZ"]["quote"]
    again = services.job_finish(job_id=str(job.job_id), results=[])
    assert again.results == finished.results
    assert again.finished_at == finished.finished_at


def test_an_order_for_a_ticker_without_data_asks_for_it_once(market: Market, settings: Any) -> None:
    ticker = market["ticker"]
    assert ticker.quote_fetched_at is None
    now = timezone.now()
    assert services.needs_refresh(ticker, now=now)

    first = services.ticker_refresh_for_order(ticker_id=ticker.pk)
    second = services.ticker_refresh_for_order(ticker_id=ticker.pk)

    assert first is not None
    assert (first.symbols, first.reason) == (["COIN"], "order")
    assert second is None  # one request at a time
    ticker.refresh_from_db()
    assert not services.needs_refresh(ticker, now=now)
    # Backing off after failures: no request even when stale.
    Ticker.objects.filter(pk=ticker.pk).update(
        fetch_requested_at=None, stale=True, next_fetch_at=now + timedelta(minutes=5)
    )
    ticker.refresh_from_db()
    assert not services.needs_refresh(ticker, now=now)
    assert services.needs_refresh(ticker, now=now + timedelta(minutes=6))


def test_a_market_order_without_any_reference_price_is_rejected_with_a_reason(market: Market) -> None:
    Ticker.objects.filter(pk=market["ticker"].pk).update(reference_price=None)
    order = place(type="Market", quantity=10)
    assert order.status == "Rejected"
    assert order.reject_reason == "no reference price for COIN: Market orders need one"


def test_schedules_are_stored_in_the_database_in_new_york_time() -> None:
    tasks_by_name = {task.task: task for task in PeriodicTask.objects.filter(task__startswith="marketdata.")}
    assert set(tasks_by_name) == {"marketdata.refresh_quotes", "marketdata.refresh_closes", "marketdata.resume_jobs"}
    quotes = tasks_by_name["marketdata.refresh_quotes"]
    assert quotes.queue == "marketdata"
    assert quotes.crontab is not None
    assert (quotes.crontab.minute, quotes.crontab.hour, str(quotes.crontab.timezone)) == (
        "*",
        "9-16",
        "America/New_York",
    )
    assert tasks_by_name["marketdata.refresh_closes"].crontab.minute == "20,50"


def test_market_hours_and_the_last_closed_session() -> None:
    # Friday 2024-03-08: open 09:30-16:00 New York (EST, UTC-5).
    assert not tasks.market_open(datetime(2024, 3, 8, 14, 29, tzinfo=UTC))
    assert tasks.market_open(datetime(2024, 3, 8, 14, 30, tzinfo=UTC))
    assert tasks.market_open(datetime(2024, 3, 8, 20, 59, tzinfo=UTC))
    assert not tasks.market_open(datetime(2024, 3, 9, 15, 0, tzinfo=UTC))  # Saturday
    assert not tasks.market_open(datetime(2024, 3, 29, 15, 0, tzinfo=UTC))  # Good Friday
    assert tasks.last_closed_session(datetime(2024, 3, 8, 20, 0, tzinfo=UTC)) == date(2024, 3, 7)
    assert tasks.last_closed_session(datetime(2024, 3, 8, 21, 30, tzinfo=UTC)) == date(2024, 3, 8)
    assert tasks.last_closed_session(datetime(2024, 3, 10, 12, 0, tzinfo=UTC)) == date(2024, 3, 8)


def test_the_after_close_fetch_asks_only_for_tickers_missing_the_session() -> None:
    services.snapshot_load(symbols=["MSFT", "AAPL"])
    PriceBar.objects.filter(ticker__symbol="AAPL", date=date(2024, 3, 8)).delete()
    assert services.symbols_missing_close(session=date(2024, 3, 8)) == ["AAPL"]


def test_stalled_jobs_are_found_for_resuming() -> None:
    services.snapshot_load(symbols=["MSFT"])
    job = services.job_request(symbols=["MSFT"], reason="test", dispatch=False)
    assert services.jobs_stalled(older_than=timedelta(minutes=5)) == []
    MarketDataJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=6))
    assert services.jobs_stalled(older_than=timedelta(minutes=5)) == [str(job.job_id)]
    # After an hour it is closed as it stands rather than resumed again.
    MarketDataJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    assert services.jobs_stalled(older_than=timedelta(minutes=5)) == []
    job.refresh_from_db()
    assert job.state == MarketDataJobState.DONE  # no failure recorded: nothing known to be wrong
    assert job.finished_at is not None


def test_a_ticker_removed_before_its_fetch_is_a_recorded_failure() -> None:
    Ticker.objects.create(symbol="GONE")
    job = services.job_request(symbols=["GONE"], reason="test", dispatch=False)
    Ticker.objects.filter(symbol="GONE").delete()
    outcome = services.ticker_fetch(symbol="GONE", job_id=str(job.job_id), provider=services.SnapshotProvider())
    assert {part: error.kind for part, error in outcome.failed.items()} == {
        "quote": "unknown_symbol",
        "history": "unknown_symbol",
    }
    assert services.job_finish(job_id=str(job.job_id)).state == MarketDataJobState.FAILED


def test_admin_shows_market_data_and_fetches_on_request(admin_client: Any) -> None:
    from django.urls import reverse

    services.snapshot_load(symbols=["MSFT"])
    Ticker.objects.create(symbol="ZZZZ", active=False)
    job = services.job_run_inline(
        job=services.job_request(symbols=["ZZZZ"], reason="test", dispatch=False),
        provider=services.SnapshotProvider(),
        sleep=lambda seconds: None,
    )
    for name in ["broker_ticker", "broker_pricebar", "broker_marketdatajob", "broker_marketdatafailure"]:
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    failures = admin_client.get(reverse("admin:broker_marketdatafailure_changelist")).content.decode()
    assert "ZZZZ" in failures
    assert "unknown_symbol" in failures
    assert admin_client.get(reverse("admin:broker_marketdatajob_change", args=[job.pk])).status_code == 200

    msft = Ticker.objects.get(symbol="MSFT")
    response = admin_client.post(
        reverse("admin:broker_ticker_changelist"),
        {"action": "fetch_now", "_selected_action": [msft.pk]},
        follow=True,
    )
    assert response.status_code == 200
    requested = MarketDataJob.objects.get(reason="admin")
    assert requested.symbols == ["MSFT"]
    assert requested.requested_by == "admin"
