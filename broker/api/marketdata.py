"""Tickers (quote summary and freshness), daily history, and market-data fetch jobs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import access, roles
from broker.api import throttling
from broker.api.permissions import AUTHENTICATED_WITH_PERMISSION
from broker.exceptions import ValidationFailed
from broker.marketdata import selectors, services
from broker.models import MarketDataJob, PriceBar, Ticker


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _money(value: Decimal | None) -> str | None:
    """Cents when the price is on the cent, else the places it has (up to four)."""
    if value is None:
        return None
    cents = value.quantize(Decimal("0.01"))
    return str(cents) if value == cents else str(value.normalize())


class TickerOutputSerializer(serializers.ModelSerializer[Ticker]):
    lastPrice = serializers.SerializerMethodField()
    previousClose = serializers.SerializerMethodField()
    dayHigh = serializers.SerializerMethodField()
    dayLow = serializers.SerializerMethodField()
    marketCap = serializers.IntegerField(source="market_cap", allow_null=True)
    referencePrice = serializers.SerializerMethodField()
    quoteSource = serializers.CharField(source="quote_source")
    fetchedAt = serializers.SerializerMethodField()
    historyFetchedAt = serializers.SerializerMethodField()

    class Meta:
        model = Ticker
        fields = [
            "symbol",
            "name",
            "exchange",
            "currency",
            "lastPrice",
            "previousClose",
            "dayHigh",
            "dayLow",
            "volume",
            "marketCap",
            "referencePrice",
            "active",
            "quoteSource",
            "fetchedAt",
            "historyFetchedAt",
            "stale",
        ]

    def get_lastPrice(self, ticker: Ticker) -> str | None:
        return _money(ticker.last_price)

    def get_previousClose(self, ticker: Ticker) -> str | None:
        return _money(ticker.previous_close)

    def get_dayHigh(self, ticker: Ticker) -> str | None:
        return _money(ticker.day_high)

    def get_dayLow(self, ticker: Ticker) -> str | None:
        return _money(ticker.day_low)

    def get_referencePrice(self, ticker: Ticker) -> str | None:
        return _money(ticker.reference_price)

    def get_fetchedAt(self, ticker: Ticker) -> str | None:
        return _time(ticker.quote_fetched_at)

    def get_historyFetchedAt(self, ticker: Ticker) -> str | None:
        return _time(ticker.history_fetched_at)


class BarOutputSerializer(serializers.ModelSerializer[PriceBar]):
    """Prices exactly as stored: Yahoo's six decimal places."""

    adjClose = serializers.DecimalField(source="adj_close", max_digits=20, decimal_places=6)

    class Meta:
        model = PriceBar
        fields = ["date", "open", "high", "low", "close", "adjClose", "volume"]


class JobOutputSerializer(serializers.ModelSerializer[MarketDataJob]):
    jobId = serializers.UUIDField(source="job_id")
    tickers = serializers.ListField(source="symbols", child=serializers.CharField())
    requestedBy = serializers.CharField(source="requested_by")
    createdAt = serializers.SerializerMethodField()
    finishedAt = serializers.SerializerMethodField()
    failures = serializers.SerializerMethodField()

    class Meta:
        model = MarketDataJob
        fields = [
            "jobId",
            "state",
            "tickers",
            "parts",
            "reason",
            "requestedBy",
            "results",
            "failures",
            "createdAt",
            "finishedAt",
        ]

    def get_createdAt(self, job: MarketDataJob) -> str | None:
        return _time(job.created_at)

    def get_finishedAt(self, job: MarketDataJob) -> str | None:
        return _time(job.finished_at)

    def get_failures(self, job: MarketDataJob) -> list[dict[str, Any]]:
        return [
            {
                "ticker": failure.symbol,
                "what": failure.what,
                "kind": failure.kind,
                "error": failure.error,
                "attempts": failure.attempts,
                "resolved": failure.resolved_at is not None,
            }
            for failure in job.failures.all()
        ]


class TickerListView(generics.ListAPIView[Ticker]):
    """Every ticker with its quote summary and how fresh it is."""

    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.VIEW_BLOTTER
    serializer_class = TickerOutputSerializer

    def get_queryset(self) -> Any:
        return selectors.tickers_list()


class TickerDetailView(APIView):
    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.VIEW_BLOTTER

    @extend_schema(responses=TickerOutputSerializer)
    def get(self, request: Request, symbol: str) -> Response:
        return Response(TickerOutputSerializer(selectors.ticker_get(symbol=symbol)).data)


def _date_param(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed({name: [f"{raw!r} is not a date; use YYYY-MM-DD."]}) from None


class TickerHistoryView(APIView):
    """Daily bars from `start` to `end` inclusive (default: the year up to the last stored bar)."""

    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.VIEW_BLOTTER

    @extend_schema(
        parameters=[
            OpenApiParameter("start", str, description="First date, YYYY-MM-DD."),
            OpenApiParameter("end", str, description="Last date, YYYY-MM-DD (inclusive)."),
        ],
        responses=inline_serializer(
            "TickerHistory",
            {
                "symbol": serializers.CharField(),
                "start": serializers.DateField(allow_null=True),
                "end": serializers.DateField(allow_null=True),
                "bars": BarOutputSerializer(many=True),
            },
        ),
    )
    def get(self, request: Request, symbol: str) -> Response:
        ticker = selectors.ticker_get(symbol=symbol)
        start, end = _date_param(request, "start"), _date_param(request, "end")
        if start and end and start > end:
            raise ValidationFailed({"start": [f"start {start} is after end {end}."]})
        start, end = selectors.history_window(ticker=ticker, start=start, end=end)
        bars = selectors.history(ticker=ticker, start=start, end=end) if start and end else PriceBar.objects.none()
        return Response(
            {
                "symbol": ticker.symbol,
                "start": start,
                "end": end,
                "bars": BarOutputSerializer(bars, many=True).data,
            }
        )


class MarketDataJobCreateView(APIView):
    """`{"tickers": [...]}` -> 202 with the job; fetched in parallel on the `marketdata` queue.

    Staff may name symbols the broker does not list yet: they are created, inactive until a quote
    arrives. Clients may refresh listed tickers only. Staff need what the tickers screen's refresh
    button needs (orders.view_blotter).
    """

    throttle_scope = throttling.MARKET_DATA
    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.VIEW_BLOTTER

    @extend_schema(
        request=inline_serializer(
            "MarketDataRequest", {"tickers": serializers.ListField(child=serializers.CharField())}
        ),
        responses={202: JobOutputSerializer},
        examples=[OpenApiExample("Refresh two tickers", value={"tickers": ["AAPL", "MSFT"]}, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        symbols = services.parse_symbols(body.get("tickers"))
        job = services.job_request(
            symbols=symbols,
            reason="api",
            requested_by=request.user.get_username(),
            create_unknown=access.is_staff(request.user),
        )
        headers = {"Location": f"/api/market-data/{job.job_id}"}
        return Response(JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED, headers=headers)


class MarketDataJobDetailView(APIView):
    permission_classes = AUTHENTICATED_WITH_PERMISSION
    required_permission = roles.VIEW_BLOTTER

    @extend_schema(responses=JobOutputSerializer)
    def get(self, request: Request, job_id: str) -> Response:
        return Response(JobOutputSerializer(selectors.job_get(job_id=job_id)).data)
