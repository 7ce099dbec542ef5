"""Reads of the stored reports, shared by the report screens and the reporting API.

Each costs a fixed number of queries whatever its date range (a year of days costs what a week does):
the unique (customer, date) and (ticker, date) indexes answer them. What they return is the stored
rows; computing a missing or provisional day first is `aggregation.days_ensure`, a write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.models import Count, Max, Min, QuerySet, Sum

from broker.models import Customer, Ticker
from reporting.models import CustomerDay, PositionSnapshot, TickerDay


@dataclass(frozen=True, slots=True)
class DateRange:
    start: date
    end: date


def customer_with_latest_day(*, customer_id: str) -> tuple[Customer, date | None] | None:
    """The customer and its latest stored day, in one query; None for an unknown customer."""
    customer = Customer.objects.annotate(latest=Max("report_days__date")).filter(customer_id=customer_id).first()
    return None if customer is None else (customer, customer.latest)


def ticker_with_latest_day(*, symbol: str) -> tuple[Ticker, date | None] | None:
    """The ticker (any case) and its latest stored day, in one query; None for an unknown symbol."""
    ticker = Ticker.objects.annotate(latest=Max("report_days__date")).filter(symbol=symbol.upper()).first()
    return None if ticker is None else (ticker, ticker.latest)


def latest_report_day() -> date | None:
    return CustomerDay.objects.aggregate(latest=Max("date"))["latest"]


def customer_day_list(*, customer: Customer, dates: DateRange | list[date]) -> QuerySet[CustomerDay]:
    """The customer's stored days in a range (inclusive) or among given dates, oldest first."""
    days = CustomerDay.objects.filter(customer=customer)
    if isinstance(dates, DateRange):
        days = days.filter(date__range=(dates.start, dates.end))
    else:
        days = days.filter(date__in=dates)
    return days.order_by("date")


def customer_day_provisional(*, customer: Customer, day: date) -> bool | None:
    """Whether the customer's stored row for `day` is provisional; None when there is no row."""
    return CustomerDay.objects.filter(customer=customer, date=day).values_list("provisional", flat=True).first()


def customer_days_on(*, day: date) -> QuerySet[CustomerDay]:
    """Every customer's row for `day`, by customer id."""
    return CustomerDay.objects.filter(date=day).select_related("customer").order_by("customer__customer_id")


def customers_with_day(*, day: date | None) -> list[tuple[Customer, CustomerDay | None]]:
    """Every customer with its stored row for `day` (None when it has none, or no day is given)."""
    rows = {row.customer_id: row for row in CustomerDay.objects.filter(date=day)} if day else {}
    return [(customer, rows.get(customer.pk)) for customer in Customer.objects.order_by("customer_id")]


def position_snapshot_list(*, customer: Customer, day: date) -> QuerySet[PositionSnapshot]:
    """The customer's positions at `day`'s close, a position closed that day included (quantity 0)."""
    return (
        PositionSnapshot.objects.filter(customer=customer, date=day).select_related("ticker").order_by("ticker__symbol")
    )


def ticker_day_list(*, ticker: Ticker, dates: DateRange) -> QuerySet[TickerDay]:
    return TickerDay.objects.filter(ticker=ticker, date__range=(dates.start, dates.end)).order_by("date")


def ticker_days_on(*, day: date) -> QuerySet[TickerDay]:
    """Every ticker traded on `day`, by symbol."""
    return TickerDay.objects.filter(date=day).select_related("ticker").order_by("ticker__symbol")


def reported_ticker_list() -> QuerySet[Ticker]:
    """The tickers with stored days, each with its first and last day, number of days and total volume."""
    return (
        Ticker.objects.filter(report_days__isnull=False)
        .annotate(
            first_day=Min("report_days__date"),
            last_day=Max("report_days__date"),
            days=Count("report_days"),
            volume_total=Sum("report_days__volume"),
        )
        .order_by("symbol")
    )
