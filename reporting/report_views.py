"""Report screens over the stored aggregation (`reporting.aggregation` writes every row they read): the
Reports index, a customer's statement (cash, market value and P&L per day, positions at the end date)
and a ticker's days, each table also as CSV.

Each page reads a fixed number of queries whatever its date range: a year of days costs what a week
does. Money and prices leave as decimal strings (CSV and the charts' JSON); the charts alone turn them
into numbers, to draw.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from broker.screens import StaffRequest as HttpRequest
from broker.screens import screen
from orders import roles
from orders.api.serializers import format_price
from reporting import aggregation, selectors
from reporting.models import CustomerDay, PositionSnapshot, TickerDay
from reporting.selectors import DateRange

# Days shown when the range is not given: up to the latest stored day, and this many days back.
DEFAULT_DAYS = 90
REBUILD_HINT = "manage.py rebuild_reports"
EARLIEST = aggregation.BEGINNING.date()

Row = dict[str, Any]


class ReportRangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.error_messages["invalid"] = "Enter a date as YYYY-MM-DD."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("start", "end"):
            # Nothing is stored before the aggregation's beginning, and a default start counted back
            # from a year-1 end would overflow.
            if data.get(name) and data[name] < EARLIEST:
                self.add_error(name, f"Enter a date from {EARLIEST.isoformat()} on.")
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            self.add_error("end", "Must be on or after the start date.")
        return data


def _window(form: ReportRangeForm, latest: date | None) -> DateRange | None:
    """The dates asked for, the missing ones filled in from the latest stored day; None when the form
    is in error or nothing is stored yet (and no end was given)."""
    if not form.is_valid():
        return None
    end = form.cleaned_data.get("end") or latest
    start = form.cleaned_data.get("start")
    if end is None:
        return None
    if start is not None and start > end:  # only a start given, after the latest stored day
        end = start
    return DateRange(start=start or end - timedelta(days=DEFAULT_DAYS - 1), end=end)


def _today_ensure(form: ReportRangeForm) -> None:
    """A range asked to reach today shows today as it stands: today is computed first (from the latest
    stored day, whatever the gap), provisional until the nightly run after the close. A range in the past
    reads only what is stored."""
    if not form.is_valid():
        return
    today = aggregation.today()
    start, end = form.cleaned_data.get("start"), form.cleaned_data.get("end")
    if end is not None and end >= today and (start is None or start <= today):
        aggregation.days_ensure([today])


def _range_form(form: ReportRangeForm, window: DateRange | None) -> ReportRangeForm:
    """What the page shows: the resolved dates, or the user's input next to its errors."""
    if window is None:
        return form
    return ReportRangeForm(initial={"start": window.start, "end": window.end})


# --- rows: one dict per table row, the same for the table, the chart and the CSV -------------------------


def _text(value: Any) -> str:
    """A CSV cell or chart value: decimals as written (never a float), dates in ISO, booleans in lower case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


DAY_COLUMNS = (
    "date",
    "nrTrades",
    "fees",
    "cash",
    "marketValue",
    "totalValue",
    "tradePnl",
    "positionPnl",
    "totalPnl",
    "provisional",
)


def _day_row(day: CustomerDay) -> Row:
    return {
        "date": day.date,
        "nrTrades": day.nr_trades,
        "fees": day.commission_paid,
        "cash": day.remaining_fund,
        "marketValue": day.market_value,
        "totalValue": day.remaining_fund + day.market_value,
        "tradePnl": day.trade_pnl,
        "positionPnl": day.position_pnl,
        "totalPnl": day.total_pnl,
        "provisional": day.provisional,
    }


POSITION_COLUMNS = (
    "date",
    "ticker",
    "quantity",
    "averageCost",
    "close",
    "closeDate",
    "marketValue",
    "tradePnl",
    "positionPnl",
    "totalPnl",
    "provisional",
)


def _position_row(position: PositionSnapshot) -> Row:
    return {
        "date": position.date,
        "ticker": position.ticker.symbol,
        "quantity": position.quantity,
        "averageCost": format_price(position.average_cost),
        "close": format_price(position.close),
        "closeDate": position.close_date,
        "marketValue": position.market_value,
        "tradePnl": position.trade_pnl,
        "positionPnl": position.position_pnl,
        "totalPnl": position.total_pnl,
        "provisional": position.provisional,
    }


TICKER_DAY_COLUMNS = (
    "date",
    "nrTrades",
    "volume",
    "notional",
    "vwap",
    "open",
    "high",
    "low",
    "last",
    "buyVolume",
    "sellVolume",
    "litVolume",
    "darkVolume",
    "fees",
    "close",
    "closeDate",
    "provisional",
)


def _ticker_day_row(day: TickerDay) -> Row:
    return {
        "date": day.date,
        "nrTrades": day.nr_trades,
        "volume": day.volume,
        "notional": day.notional,
        "vwap": format_price(day.vwap),
        "open": format_price(day.open),
        "high": format_price(day.high),
        "low": format_price(day.low),
        "last": format_price(day.last),
        "buyVolume": day.buy_volume,
        "sellVolume": day.sell_volume,
        "litVolume": day.lit_volume,
        "darkVolume": day.dark_volume,
        "fees": day.fees,
        "close": format_price(day.close),
        "closeDate": day.close_date,
        "provisional": day.provisional,
    }


def _series(rows: Iterable[Row], keys: Sequence[str]) -> list[dict[str, str]]:
    """The charts' data: `time` and the chosen columns as strings."""
    return [{"time": _text(row["date"]), **{key: _text(row[key]) for key in keys}} for row in rows]


def _csv(rows: Iterable[Row], columns: Sequence[str], filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(row[column]) for column in columns])
    return response


def _csv_request(request: HttpRequest, tables: Sequence[str]) -> str | None:
    """The table asked for as CSV (`?format=csv&table=...`), or None for the page."""
    if request.GET.get("format") != "csv":
        return None
    table = request.GET.get("table", tables[0])
    if table not in tables:
        raise Http404(f"No table {table}; there are {', '.join(tables)}.")
    return table


def _page_url(request: HttpRequest) -> str:
    """The page itself, without the CSV parameters: where a CSV link with bad dates goes back to."""
    query = request.GET.copy()
    for key in ("format", "table"):
        query.pop(key, None)
    return f"{request.path}?{query.urlencode()}" if query else request.path


def _sums(rows: Sequence[Row], *keys: str) -> Row:
    return {key: sum((row[key] for row in rows), start=Decimal(0)) for key in keys}


def _csv_query(window: DateRange | None) -> str:
    """The CSV links' filters: the dates the page shows, so a file holds exactly the page's rows."""
    return f"start={window.start.isoformat()}&end={window.end.isoformat()}" if window else ""


def _span(window: DateRange | None) -> str:
    return f"{window.start.isoformat()}-{window.end.isoformat()}" if window else "none"


# --- screens ----------------------------------------------------------------------------------------------


@screen(roles.VIEW_BLOTTER)
@require_GET
def reports(request: HttpRequest) -> HttpResponse:
    latest = selectors.latest_report_day()
    customers = [{"customer": customer, "day": day} for customer, day in selectors.customers_with_day(day=latest)]
    tickers = selectors.reported_ticker_list()
    context = {"latest": latest, "customers": customers, "tickers": tickers, "rebuild_hint": REBUILD_HINT}
    return render(request, "reporting/report_index.html", context)


@screen(roles.VIEW_BLOTTER)
@require_GET
def customer_statement(request: HttpRequest, customer_id: str) -> HttpResponse:
    form = ReportRangeForm(request.GET)
    _today_ensure(form)  # before the reads, so `latest` counts today when it was just computed
    found = selectors.customer_with_latest_day(customer_id=customer_id)
    if found is None:
        raise Http404(f"No customer {customer_id}.")
    customer, latest = found
    window = _window(form, latest)
    table = _csv_request(request, ("days", "positions"))
    if table is not None and form.errors:
        return redirect(_page_url(request))  # the page shows the errors next to the dates

    stored = selectors.customer_day_list(customer=customer, dates=window) if window else []
    days = [_day_row(day) for day in stored]
    # The last stored day of the range: the end date itself unless it has no rows (a weekend, today).
    positions_date: date | None = days[-1]["date"] if days else None
    snapshots = selectors.position_snapshot_list(customer=customer, day=positions_date) if positions_date else []
    positions = [_position_row(position) for position in snapshots]
    if table == "days":
        return _csv(days, DAY_COLUMNS, f"statement-{customer.customer_id}-days-{_span(window)}.csv")
    if table == "positions":
        return _csv(positions, POSITION_COLUMNS, f"statement-{customer.customer_id}-positions-{_span(window)}.csv")

    context: dict[str, Any] = {
        "customer": customer,
        "latest": latest,
        "window": window,
        "form": _range_form(form, window),
        "days": days,
        "last": days[-1] if days else None,
        "totals": {
            **_sums(days, "fees", "tradePnl", "positionPnl", "totalPnl"),
            "nrTrades": sum(row["nrTrades"] for row in days),
        },
        "positions": positions,
        "positions_date": positions_date,
        "positions_totals": _sums(positions, "marketValue", "tradePnl", "positionPnl", "totalPnl"),
        "series": _series(days, ("cash", "marketValue", "totalValue", "totalPnl")),
        "query": _csv_query(window),
        "today": aggregation.today(),
        "rebuild_hint": REBUILD_HINT,
    }
    return render(request, "reporting/report_customer.html", context)


@screen(roles.VIEW_BLOTTER)
@require_GET
def ticker_days(request: HttpRequest, symbol: str) -> HttpResponse:
    form = ReportRangeForm(request.GET)
    _today_ensure(form)  # before the reads, so `latest` counts today when it was just computed
    found = selectors.ticker_with_latest_day(symbol=symbol)
    if found is None:
        raise Http404(f"No ticker {symbol}.")
    ticker, latest = found
    window = _window(form, latest)
    table = _csv_request(request, ("days",))
    if table is not None and form.errors:
        return redirect(_page_url(request))

    days = [_ticker_day_row(day) for day in selectors.ticker_day_list(ticker=ticker, dates=window)] if window else []
    if table is not None:
        return _csv(days, TICKER_DAY_COLUMNS, f"ticker-{ticker.symbol}-days-{_span(window)}.csv")

    context: dict[str, Any] = {
        "ticker": ticker,
        "latest": latest,
        "window": window,
        "form": _range_form(form, window),
        "days": days,
        "totals": {
            **{key: sum(row[key] for row in days) for key in ("nrTrades", "volume", "litVolume", "darkVolume")},
            **_sums(days, "notional", "fees"),
        },
        "series": _series(days, ("volume", "vwap", "litVolume", "darkVolume")),
        "query": _csv_query(window),
        "today": aggregation.today(),
        "rebuild_hint": REBUILD_HINT,
    }
    return render(request, "reporting/report_ticker.html", context)
