"""The tickers screens server-side: who may open them, what they show, and the refresh action."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from broker.marketdata import services as marketdata_services
from broker.models import MarketDataJob, PriceBar
from orders import roles
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db


def logged_in(username: str = "trader", group: str = roles.TRADER) -> Client:
    staff_user(username, group)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_anonymous_users_are_sent_to_log_in() -> None:
    response = Client().get("/tickers/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_tickers_list_shows_quotes_and_staleness() -> None:
    marketdata_services.snapshot_load(symbols=["AAPL", "MSFT"])
    from broker.models import Ticker

    Ticker.objects.filter(symbol="MSFT").update(stale=True)
    body = logged_in().get("/tickers/").content.decode()
    assert "Apple Inc." in body
    assert "170.73" in body
    msft_row = body[body.index('data-ticker="MSFT"') :].split("</tr>")[0]
    assert "stale" in msft_row


def test_ticker_page_embeds_the_chosen_range_of_bars() -> None:
    marketdata_services.snapshot_load(symbols=["AAPL"])
    client = logged_in()

    response = client.get("/tickers/AAPL/?range=1M")
    assert response.status_code == 200
    html = response.content.decode()
    embedded = html.split('<script id="price-series" type="application/json">')[1].split("</script>")[0]
    series = json.loads(embedded)  # what the chart script reads
    assert series[-1] == {
        "time": "2024-03-08", "open": "169.000000", "high": "173.699997", "low": "168.940002",
        "close": "170.729996", "volume": 76114600,
    }  # fmt: skip
    assert series[0]["time"] == "2024-02-06"  # the first session of the 31 days back
    everything = client.get("/tickers/AAPL/?range=All").context["series"]
    assert len(everything) == PriceBar.objects.filter(ticker__symbol="AAPL").count()
    # An unknown range falls back to a year; an unknown ticker is the 404 page.
    assert client.get("/tickers/AAPL/?range=bogus").context["range"] == "1Y"
    assert client.get("/tickers/NOPE/").status_code == 404


def test_refresh_starts_a_market_data_job_and_says_so() -> None:
    marketdata_services.snapshot_load(symbols=["AAPL", "MSFT"])
    client = logged_in()

    response = client.post("/tickers/refresh/", {"symbol": "aapl"}, follow=True)

    job = MarketDataJob.objects.get()
    assert (job.symbols, job.reason, job.requested_by) == (["AAPL"], "screen", "trader")
    assert "in the background" in response.content.decode()
    client.post("/tickers/refresh/", {})
    assert MarketDataJob.objects.latest("created_at").symbols == ["AAPL", "MSFT"]
    assert client.get("/tickers/refresh/").status_code == 405


def test_refresh_of_an_unknown_symbol_is_a_message_not_an_error_page() -> None:
    response = logged_in().post("/tickers/refresh/", {"symbol": "NOPE"}, follow=True)
    assert response.status_code == 200
    assert "Unknown ticker(s): NOPE." in response.content.decode()
    assert not MarketDataJob.objects.exists()


def test_a_job_with_many_failures_shows_a_few_and_counts_the_rest() -> None:
    from broker.models import Ticker

    symbols = [f"ZZ{letter}" for letter in "ABCDEF"]
    for symbol in symbols:
        Ticker.objects.create(symbol=symbol, active=False)
    job = marketdata_services.job_request(symbols=symbols, reason="test", dispatch=False)
    marketdata_services.job_run_inline(
        job=job, provider=marketdata_services.SnapshotProvider(), sleep=lambda seconds: None
    )

    body = logged_in().get("/tickers/").content.decode()
    assert body.count("unknown_symbol \u00d71") == 4  # one attempt each
    assert "and 8 more" in body
    assert "failed" in body
