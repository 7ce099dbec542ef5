"""The reporting endpoints: the stored daily reports (computed on demand when missing) and valuations.

Reading a day that has no stored rows yet computes it first (`aggregation.day_aggregate`), as does a
day whose rows are still provisional (computed before the day ended: trades may have come since):
today before the nightly run, a day before the first stored one, or one the nightly run missed. At
most `aggregation.ON_DEMAND_DAYS` days are computed per request, the newest first; older days still missing stay
missing from the answer (a P&L series simply has no row for them) until `manage.py recover_reports`
or `manage.py aggregate --date D` fills them, or a later request computes its next seven.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import access, roles
from broker.api.permissions import Requires
from broker.exceptions import Forbidden, ValidationFailed
from broker.models import Customer
from reporting import aggregation, selectors
from reporting.api.serializers import (
    CustomerDayOutputSerializer,
    CustomerPnlOutputSerializer,
    CustomerPositionsOutputSerializer,
    PortfolioOutputSerializer,
    TickerDayOutputSerializer,
)
from reporting.models import CustomerDay, TickerDay
from reporting.valuation import portfolio_at

MAX_RANGE_DAYS = 366 * 2
# The aggregation counts from 1970 (`aggregation.BEGINNING`); nothing was traded before it.
FIRST_DAY = aggregation.BEGINNING.date()

ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DAY_HELP = "A trading day in New York, YYYY-MM-DD, from 1970-01-01 to today."


def _day(name: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.DATE, required=True, description=DAY_HELP)


def date_param(request: Request, name: str) -> date:
    """The query parameter `name` as a day from FIRST_DAY to today (New York); else a 400 naming it."""
    raw = request.query_params.get(name)
    if not raw:
        raise ValidationFailed({name: ["Required: a date, YYYY-MM-DD."]})
    try:
        # fromisoformat alone would also take 20240308 and week dates such as 2024-W10-5
        day = date.fromisoformat(raw) if ISO_DAY.fullmatch(raw) else None
    except ValueError:
        day = None
    if day is None:
        raise ValidationFailed({name: ["Not a date; use YYYY-MM-DD."]})
    today = aggregation.today()
    if not FIRST_DAY <= day <= today:
        raise ValidationFailed({name: [f"Must be from {FIRST_DAY} to today ({today}) in New York."]})
    return day


def as_of_param(request: Request, name: str = "asOf") -> datetime | None:
    """The query parameter `name` as an aware UTC time (None when not given); else a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    message = (
        "Not an ISO 8601 date-time with a UTC offset, e.g. 2024-03-08T15:30:00Z or 2024-03-08T10:30:00-05:00 "
        "(a '+' in a query string must be sent as %2B)."
    )
    try:
        moment = datetime.fromisoformat(raw) if len(raw) <= 40 else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationFailed({name: [message]})
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed({name: ["Out of range once converted to UTC."]}) from None


def query_params(request: Request, parsers: dict[str, Callable[[Request, str], Any]]) -> dict[str, Any]:
    """Each parameter by its parser; a 400 naming every bad one at once."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, parse in parsers.items():
        try:
            values[name] = parse(request, name)
        except ValidationFailed as failed:
            errors.update(failed.errors)
    if errors:
        raise ValidationFailed(errors)
    return values


class StaffRequires(Requires):
    """`Requires`, and staff only: a report lists every customer, which no client token may read."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if access.customer_scope(user=request.user, permission=view.required_permission) is not None:
            raise Forbidden("The reports across customers are for staff; a client token reads its own customer.")
        return True


STAFF_ONLY = [permissions.IsAuthenticated, StaffRequires]


def _visible_customer(request: Request, customer_id: str) -> Customer:
    """Staff with the blotter may look at any customer (404 if unknown); a client only at its own (403)."""
    return access.customer_for_user(user=request.user, customer_id=customer_id, permission=roles.VIEW_BLOTTER)


class CustomerReportListView(generics.ListAPIView):
    """One row per customer for the day: what they traded, their running totals, P&L and valuation.

    Staff with orders.view_blotter only. The day is computed first when it has no stored rows or only
    provisional ones (see the module docstring)."""

    permission_classes = STAFF_ONLY
    required_permission = roles.VIEW_BLOTTER
    serializer_class = CustomerDayOutputSerializer
    queryset = CustomerDay.objects.none()  # the model, for the OpenAPI document; rows come from get_queryset
    day: date

    def get_queryset(self) -> QuerySet[CustomerDay]:
        if getattr(self, "swagger_fake_view", False):
            return CustomerDay.objects.none()
        return selectors.customer_days_on(day=self.day)

    @extend_schema(parameters=[_day("date")])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.day = date_param(request, "date")
        aggregation.days_ensure([self.day])
        return super().get(request, *args, **kwargs)


class TickerReportListView(generics.ListAPIView):
    """One row per ticker traded that day (every trade of the broker's customers, whatever the venue).

    Staff with orders.view_blotter only. The day is computed first when it has no stored rows or only
    provisional ones (see the module docstring)."""

    permission_classes = STAFF_ONLY
    required_permission = roles.VIEW_BLOTTER
    serializer_class = TickerDayOutputSerializer
    queryset = TickerDay.objects.none()
    day: date

    def get_queryset(self) -> QuerySet[TickerDay]:
        if getattr(self, "swagger_fake_view", False):
            return TickerDay.objects.none()
        return selectors.ticker_days_on(day=self.day)

    @extend_schema(parameters=[_day("date")])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.day = date_param(request, "date")
        aggregation.days_ensure([self.day])
        return super().get(request, *args, **kwargs)


class CustomerPositionsView(APIView):
    """The customer's position snapshot at the day's close, valued at that day's close.

    Lists every position held at the close and also a position closed that day (quantity 0), which
    carries that day's P&L. `provisional` is true while the day has not ended (or its rows were
    computed before it did and not since)."""

    @extend_schema(parameters=[_day("date")], responses=CustomerPositionsOutputSerializer)
    def get(self, request: Request, customer_id: str) -> Response:
        customer = _visible_customer(request, customer_id)
        day = date_param(request, "date")
        aggregation.days_ensure([day])
        rows = selectors.position_snapshot_list(customer=customer, day=day)
        provisional = selectors.customer_day_provisional(customer=customer, day=day)
        body = {
            "customer_id": customer.customer_id,
            "date": day,
            # A customer without a row that day (not a customer yet) has nothing pending but the day itself.
            "provisional": provisional
            if provisional is not None
            else timezone.now() < aggregation.day_start(day + timedelta(days=1)),
            "positions": rows,
        }
        return Response(CustomerPositionsOutputSerializer(body).data)


class CustomerPnlView(APIView):
    """The customer's daily P&L and value from `start` to `end` (inclusive, at most 732 days): one row
    per XNYS session in the range, plus any other day with trades, from the stored customer days.

    Missing or provisional days are computed first, at most seven per request (the newest); a day still
    missing after that, or one before the customer existed, has no row (see the module docstring)."""

    @extend_schema(parameters=[_day("start"), _day("end")], responses=CustomerPnlOutputSerializer)
    def get(self, request: Request, customer_id: str) -> Response:
        customer = _visible_customer(request, customer_id)
        params = query_params(request, {"start": date_param, "end": date_param})
        start, end = params["start"], params["end"]
        if start > end:
            raise ValidationFailed({"start": [f"start {start} is after end {end}."]})
        span = (end - start).days + 1
        if span > MAX_RANGE_DAYS:
            raise ValidationFailed({"end": [f"The range spans {span} days; at most {MAX_RANGE_DAYS}."]})
        days = aggregation.days_to_report(start, end)
        aggregation.days_ensure(days)
        rows = selectors.customer_day_list(customer=customer, dates=days)
        body = {"customer_id": customer.customer_id, "start": start, "end": end, "days": rows}
        return Response(CustomerPnlOutputSerializer(body).data)


class CustomerPortfolioView(APIView):
    """The holdings and cash the customer had at the day's close (trades up to the end of the day in
    New York), valued at that day's closes, computed from the trades and the ledger on every call.

    With `asOf`, as the books stood at that moment: trades made and ledger entries posted after it are
    left out, and corrections and busts recorded after it are not applied. Without it, as they stand now
    (`asOf` in the answer says when that was)."""

    @extend_schema(
        parameters=[
            _day("date"),
            OpenApiParameter(
                "asOf",
                OpenApiTypes.DATETIME,
                required=False,
                description="ISO 8601 date-time with a UTC offset: value the books as they stood then.",
            ),
        ],
        responses=PortfolioOutputSerializer,
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = _visible_customer(request, customer_id)
        params = query_params(request, {"date": date_param, "asOf": as_of_param})
        day, as_of = params["date"], params["asOf"]
        portfolio = portfolio_at(customer_id=customer.pk, day=day, as_of=as_of or timezone.now())
        return Response(PortfolioOutputSerializer({"customer_id": customer.customer_id, "portfolio": portfolio}).data)
