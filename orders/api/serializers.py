"""Output shapes of orders, child orders, trades and halts (camelCase, money as decimal strings)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orders.models import ChildOrder, Halt, HaltScope, Order, Trade

CENT = Decimal("0.01")


def format_price(value: Decimal | None) -> str | None:
    """Cents when the price is on the cent ("161.90"), else up to four places (dark midpoints)."""
    if value is None:
        return None
    if value == value.quantize(CENT):
        return str(value.quantize(CENT))
    return str(value.quantize(Decimal("0.0001")).normalize())


def format_time(value: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds, as in the seed output: 2022-01-31T17:41:34.884Z."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# DRF's DecimalField(max_digits=18, decimal_places=2) quantizes in the thread's context with its precision
# set to max_digits: half-even to the cent, and an error past 18 digits.
AMOUNT_CONTEXT = Context(prec=18, rounding=ROUND_HALF_EVEN)


def format_amount(value: Decimal | None) -> str | None:
    """A fee or a total to the cent, exactly as the serializers' `DecimalField(max_digits=18, decimal_places=2)`."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        value = Decimal(str(value).strip())
    return f"{value.quantize(CENT, context=AMOUNT_CONTEXT):f}"


@extend_schema_field({"type": "string", "format": "decimal", "example": "161.90", "nullable": True})
class PriceField(serializers.Field):
    def to_representation(self, value: Decimal | None) -> str | None:
        return format_price(value)


@extend_schema_field({"type": "string", "format": "date-time", "example": "2022-01-31T17:41:34.884Z", "nullable": True})
class TimeField(serializers.Field):
    def to_representation(self, value: datetime | None) -> str | None:
        return format_time(value)


class TradeOutputSerializer(serializers.ModelSerializer):
    """One fill, in the seed's output shape."""

    customerId = serializers.CharField(source="customer.customer_id")
    direction = serializers.CharField()
    ticker = serializers.CharField(source="ticker.symbol")
    type = serializers.CharField(source="order.order_type")
    quantity = serializers.IntegerField()
    price = PriceField()
    orderId = serializers.UUIDField(source="order.order_id")
    orderDate = TimeField(source="order.created_at")
    initialQuantity = serializers.IntegerField(source="order.quantity")
    split = serializers.SerializerMethodField()
    tradeId = serializers.UUIDField(source="trade_id")
    exchange = serializers.CharField(source="pool.name")
    exchangeType = serializers.CharField(source="pool.exchange_type")
    tradeDate = TimeField(source="trade_date")
    fee = serializers.DecimalField(max_digits=18, decimal_places=2)
    settlementDate = TimeField(source="settlement_date")

    class Meta:
        model = Trade
        fields = [
            "customerId",
            "direction",
            "ticker",
            "type",
            "quantity",
            "price",
            "orderId",
            "orderDate",
            "initialQuantity",
            "split",
            "tradeId",
            "exchange",
            "exchangeType",
            "tradeDate",
            "fee",
            "settlementDate",
        ]

    @extend_schema_field({"type": "string", "enum": ["Yes", "No"]})
    def get_split(self, trade: Trade) -> str:
        return "Yes" if trade.order.quantity > settings.MAX_CHILD_QUANTITY else "No"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _whole(value: Any) -> int | None:
    return None if value is None else int(value)


def trade_output(trade: Trade) -> dict[str, Any]:
    """`TradeOutputSerializer(trade).data` without DRF's per-field machinery (about a tenth of its CPU),
    for the hot paths: order entry's answer and the fill stream. `tests/orders/test_output_shapes.py`
    holds the two equal field by field."""
    order = trade.order
    pool = trade.pool
    return {
        "customerId": _text(trade.customer.customer_id),
        "direction": _text(trade.direction),
        "ticker": _text(trade.ticker.symbol),
        "type": _text(order.order_type),
        "quantity": _whole(trade.quantity),
        "price": format_price(trade.price),
        "orderId": _text(order.order_id),
        "orderDate": format_time(order.created_at),
        "initialQuantity": _whole(order.quantity),
        "split": "Yes" if order.quantity > settings.MAX_CHILD_QUANTITY else "No",
        "tradeId": _text(trade.trade_id),
        "exchange": _text(pool.name),
        "exchangeType": _text(pool.exchange_type),
        "tradeDate": format_time(trade.trade_date),
        "fee": format_amount(trade.fee),
        "settlementDate": format_time(trade.settlement_date),
    }


# The trade shape again, as flat rows straight from the database: bulk exports (the trades CSV) read
# 100k trades, where building model instances and running the serializer per row costs ~1 ms a row.
# `tests/reporting/test_trades_export.py` checks every column against TradeOutputSerializer.
TRADE_ROW_LOOKUPS = (
    "customer__customer_id",
    "direction",
    "ticker__symbol",
    "order__order_type",
    "quantity",
    "price",
    "order__order_id",
    "order__created_at",
    "order__quantity",
    "trade_id",
    "pool__name",
    "pool__kind",
    "trade_date",
    "fee",
    "settlement_date",
)


def trade_row(values: tuple[Any, ...]) -> list[Any]:
    """One `TRADE_ROW_LOOKUPS` tuple as the values of TradeOutputSerializer's fields, in its order."""
    (
        customer_id,
        direction,
        symbol,
        order_type,
        quantity,
        price,
        order_id,
        order_date,
        initial_quantity,
        trade_id,
        exchange,
        kind,
        trade_date,
        fee,
        settlement_date,
    ) = values
    return [
        customer_id,
        direction,
        symbol,
        order_type,
        quantity,
        format_price(price),
        str(order_id),
        format_time(order_date),
        initial_quantity,
        "Yes" if initial_quantity > settings.MAX_CHILD_QUANTITY else "No",
        str(trade_id),
        exchange,
        "LitPool" if kind == "Lit" else "DarkPool",
        format_time(trade_date),
        str(fee.quantize(CENT)),
        format_time(settlement_date),
    ]


class ChildOrderOutputSerializer(serializers.ModelSerializer):
    childIndex = serializers.IntegerField(source="index")
    quantity = serializers.IntegerField()
    filledQuantity = serializers.IntegerField(source="filled_quantity")
    status = serializers.CharField()
    exchange = serializers.CharField(source="pool.name", default=None)
    exchangeType = serializers.CharField(source="pool.exchange_type", default=None)
    venueTimeInForce = serializers.CharField(source="venue_time_in_force")
    routeReason = serializers.CharField(source="route_reason")
    venuesTried = serializers.ListField(source="venues_tried", child=serializers.CharField())

    class Meta:
        model = ChildOrder
        fields = [
            "childIndex",
            "quantity",
            "filledQuantity",
            "status",
            "exchange",
            "exchangeType",
            "venueTimeInForce",
            "routeReason",
            "venuesTried",
        ]


class OrderOutputSerializer(serializers.ModelSerializer):
    orderId = serializers.UUIDField(source="order_id")
    customerId = serializers.CharField(source="customer.customer_id")
    direction = serializers.CharField()
    ticker = serializers.CharField(source="ticker.symbol")
    type = serializers.CharField(source="order_type")
    quantity = serializers.IntegerField()
    price = PriceField()
    timeInForce = serializers.CharField(source="time_in_force")
    clientOrderId = serializers.CharField(source="client_order_id", allow_null=True)
    orderDate = TimeField(source="created_at")
    status = serializers.CharField()
    filledQuantity = serializers.IntegerField(source="filled_quantity")
    averagePrice = PriceField(source="average_price")
    fees = serializers.DecimalField(max_digits=18, decimal_places=2)
    sequence = serializers.IntegerField()
    rejectReason = serializers.CharField(source="reject_reason")
    updated = TimeField(source="updated_at")

    class Meta:
        model = Order
        fields = [
            "orderId",
            "customerId",
            "direction",
            "ticker",
            "type",
            "quantity",
            "price",
            "timeInForce",
            "clientOrderId",
            "orderDate",
            "status",
            "filledQuantity",
            "averagePrice",
            "fees",
            "sequence",
            "rejectReason",
            "updated",
        ]


def order_output(order: Order) -> dict[str, Any]:
    """`OrderOutputSerializer(order).data` without DRF's per-field machinery, for the hot paths (see
    `trade_output`)."""
    return {
        "orderId": _text(order.order_id),
        "customerId": _text(order.customer.customer_id),
        "direction": _text(order.direction),
        "ticker": _text(order.ticker.symbol),
        "type": _text(order.order_type),
        "quantity": _whole(order.quantity),
        "price": format_price(order.price),
        "timeInForce": _text(order.time_in_force),
        "clientOrderId": _text(order.client_order_id),
        "orderDate": format_time(order.created_at),
        "status": _text(order.status),
        "filledQuantity": _whole(order.filled_quantity),
        "averagePrice": format_price(order.average_price),
        "fees": format_amount(order.fees),
        "sequence": _whole(order.sequence),
        "rejectReason": _text(order.reject_reason),
        "updated": format_time(order.updated_at),
    }


class OrderDetailOutputSerializer(OrderOutputSerializer):
    childOrders = ChildOrderOutputSerializer(source="children", many=True)
    trades = serializers.SerializerMethodField()

    class Meta(OrderOutputSerializer.Meta):
        fields = [*OrderOutputSerializer.Meta.fields, "childOrders", "trades"]

    @extend_schema_field(TradeOutputSerializer(many=True))
    def get_trades(self, order: Order) -> list[dict[str, Any]]:
        trades = order.trades.filter(busted=False).select_related("pool", "customer", "ticker").order_by("id")
        for trade in trades:
            trade.order = order  # already loaded; saves a query per trade
        return TradeOutputSerializer(trades, many=True).data  # type: ignore[return-value]


class HaltOutputSerializer(serializers.ModelSerializer):
    """One kill-switch target and its current state."""

    scope = serializers.ChoiceField(choices=HaltScope.values)
    target = serializers.CharField(allow_null=True, help_text="Pool name, ticker symbol or customerId; null for All.")
    active = serializers.BooleanField()
    reason = serializers.CharField()
    changedBy = serializers.CharField(source="changed_by")
    changedAt = TimeField(source="changed_at")

    class Meta:
        model = Halt
        fields = ["scope", "target", "active", "reason", "changedBy", "changedAt"]


class CustomerOutputSerializer(serializers.Serializer):
    customerId = serializers.CharField(source="customer_id")
    name = serializers.CharField()
    remainingFund = serializers.DecimalField(source="remaining_fund", max_digits=24, decimal_places=2)
    settledCash = serializers.DecimalField(source="settled_cash", max_digits=24, decimal_places=2)
    unsettledCash = serializers.DecimalField(source="unsettled_cash", max_digits=24, decimal_places=2)
    reservedCash = serializers.DecimalField(source="reserved_cash", max_digits=24, decimal_places=2)
    totalCommissionPaid = serializers.DecimalField(source="total_commission_paid", max_digits=24, decimal_places=2)
    nrTrades = serializers.IntegerField(source="nr_trades")
    totalAmountInvested = serializers.DecimalField(source="total_amount_invested", max_digits=24, decimal_places=2)
    updated = TimeField()


class HoldingOutputSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    quantity = serializers.IntegerField()
    averageCost = PriceField(source="average_cost")
    marketPrice = PriceField(source="market_price")
    marketValue = serializers.DecimalField(source="market_value", max_digits=24, decimal_places=2, allow_null=True)
    unrealizedPnl = serializers.DecimalField(source="unrealized_pnl", max_digits=24, decimal_places=2, allow_null=True)
    realizedPnl = serializers.DecimalField(source="realized_pnl", max_digits=24, decimal_places=2)


class TradeVersionOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    quantity = serializers.IntegerField()
    price = PriceField()
    fee = serializers.DecimalField(max_digits=18, decimal_places=2)
    settled = serializers.BooleanField()
    change = serializers.CharField()
    reason = serializers.CharField()
    changedBy = serializers.CharField(source="changed_by")
    changedAt = TimeField(source="changed_at")


class TradeHistoryOutputSerializer(serializers.Serializer):
    tradeId = serializers.UUIDField(source="trade_id")
    version = serializers.IntegerField()
    busted = serializers.BooleanField()
    current = serializers.SerializerMethodField()
    previousVersions = TradeVersionOutputSerializer(source="versions.all", many=True)

    @extend_schema_field(TradeOutputSerializer)
    def get_current(self, trade: Trade) -> dict[str, Any]:
        return dict(TradeOutputSerializer(trade).data)
