"""Market-data screens: the tickers with their quote summary and freshness, and a ticker's page with
its daily chart. Reads through `broker.marketdata.selectors`; a refresh goes through
`broker.marketdata.services.job_request` like the API's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from broker.exceptions import ApplicationError, NotFound
from broker.marketdata import selectors as marketdata_selectors
from broker.marketdata import services as marketdata_services
from broker.models import MarketDataFailure, MarketDataJob, MarketDataJobState, PriceBar
from broker.screens import StaffRequest as HttpRequest
from broker.screens import screen
from orders import roles

# Chart ranges offered on a ticker's page, in days back from its last bar (None: everything stored).
RANGES = {"1M": 31, "3M": 92, "6M": 183, "1Y": 366, "3Y": 1096, "All": None}
DEFAULT_RANGE = "1Y"
JOB_FAILURES_SHOWN = 4  # per job on the tickers screen; the admin lists them all


def _change(last: Decimal | None, previous: Decimal | None) -> Decimal | None:
    if last is None or not previous:
        return None
    return ((last - previous) / previous * 100).quantize(Decimal("0.01"))


@screen(roles.VIEW_BLOTTER)
@require_GET
def tickers(request: HttpRequest) -> HttpResponse:
    rows = [
        {"ticker": ticker, "change": _change(ticker.last_price, ticker.previous_close)}
        for ticker in marketdata_selectors.tickers_list()
    ]
    jobs: list[dict[str, Any]] = []
    for job in MarketDataJob.objects.prefetch_related("failures")[:8]:
        failing = [failure for failure in job.failures.all() if failure.resolved_at is None]
        jobs.append({"job": job, "failures": failing[:JOB_FAILURES_SHOWN], "more": len(failing) - JOB_FAILURES_SHOWN})
    context = {
        "rows": rows,
        "jobs": jobs,
        "pending": any(item["job"].state == MarketDataJobState.PENDING for item in jobs),
    }
    if request.htmx and request.GET.get("part") == "jobs":
        return render(request, "reporting/_market_jobs.html", context)
    return render(request, "reporting/tickers.html", context)


@screen(roles.VIEW_BLOTTER)
@require_GET
def ticker(request: HttpRequest, symbol: str) -> HttpResponse:
    try:
        item = marketdata_selectors.ticker_get(symbol=symbol)
    except NotFound:
        raise Http404(f"No ticker {symbol}.") from None
    chosen = request.GET.get("range", DEFAULT_RANGE)
    if chosen not in RANGES:
        chosen = DEFAULT_RANGE
    _, end = marketdata_selectors.history_window(ticker=item, start=None, end=None)
    days = RANGES[chosen]
    bars: list[PriceBar] = []
    if end is not None:
        first = end - timedelta(days=days) if days else PriceBar.objects.filter(ticker=item).earliest("date").date
        bars = list(marketdata_selectors.history(ticker=item, start=first, end=end))
    series = [
        {
            "time": bar.date.isoformat(),
            "open": str(bar.open),
            "high": str(bar.high),
            "low": str(bar.low),
            "close": str(bar.close),
            "volume": bar.volume,
        }
        for bar in bars
    ]
    context: dict[str, Any] = {
        "ticker": item,
        "change": _change(item.last_price, item.previous_close),
        "series": series,
        "ranges": list(RANGES),
        "range": chosen,
        "first": bars[0] if bars else None,
        "last": bars[-1] if bars else None,
        "failures": MarketDataFailure.objects.filter(symbol=item.symbol, resolved_at__isnull=True)[:10],
    }
    return render(request, "reporting/ticker.html", context)


@screen(roles.VIEW_BLOTTER)
@require_POST
def market_data_refresh(request: HttpRequest) -> HttpResponse:
    """Ask the workers for fresh quotes and history: one ticker (`symbol`) or every active one."""
    raw = request.POST.get("symbol", "")  # parse_symbols checks it as sent, then strips it
    symbol = ""
    try:
        symbols = marketdata_services.parse_symbols(
            [raw]
            if raw.strip()
            else list(marketdata_selectors.tickers_list().filter(active=True).values_list("symbol", flat=True))
        )
        symbol = symbols[0] if raw.strip() else ""
        job = marketdata_services.job_request(symbols=symbols, reason="screen", requested_by=request.user.username)
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("reporting:tickers")
    else:
        messages.success(
            request,
            f"Fetching {', '.join(job.symbols[:6])}{' …' if len(job.symbols) > 6 else ''} "
            f"from Yahoo in the background (job {str(job.job_id)[:8]}).",
        )
    return redirect("reporting:ticker", symbol=symbol) if symbol else redirect("reporting:tickers")
