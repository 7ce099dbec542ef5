"""Output shapes of the reports: camelCase, money and prices as decimal strings, counts as integers."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orders.api.serializers import format_time

CENT = Decimal("0.01")


def format_money(value: Decimal) -> str:
    """To the cent. Stored amounts are cents already; this only fixes how many places are shown."""
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP):f}"


def format_exact_price(value: Decimal) -> str:
    """Cents when the price is on the cent, else every place it has: a close keeps the bar's six places
    and an average cost its four, so a client can recompute a market value to the cent."""
    cents = value.quantize(CENT)
    return f"{cents:f}" if value == cents else f"{value.normalize():f}"


@extend_schema_field({"type": "string", "format": "decimal", "example": "1262500.00"})
class MoneyField(serializers.Field):
    def to_representation(self, value: Decimal) -> str:
        return format_money(value)


@extend_schema_field({"type": "string", "format": "decimal", "example": "249.9608"})
class PriceField(serializers.Field):
    def to_representation(self, value: Decimal) -> str:
        return format_exact_price(value)


@extend_schema_field({"type": "string", "format": "date-time", "example": "2024-03-08T21:05:00.000Z"})
class TimeField(serializers.Field):
    def to_representation(self, value: Any) -> str | None:
        return format_time(value)


class CustomerDayOutputSerializer(serializers.Serializer):
    """One customer's day (a `CustomerDay`)."""

    customerId = serializers.CharField(source="customer.customer_id")
    date = serializers.DateField()
    nrTrades = serializers.IntegerField(source="nr_trades", help_text="Trades of the day.")
    buyNotional = MoneyField(source="buy_notional")
    sellNotional = MoneyField(source="sell_notional")
    commissionPaid = MoneyField(source="commission_paid", help_text="Fees of the day.")
    totalNrTrades = serializers.IntegerField(source="total_nr_trades", help_text="Trades up to and including the day.")
    totalCommissionPaid = MoneyField(source="total_commission_paid")
    totalAmountInvested = MoneyField(source="total_amount_invested", help_text="Cumulative buy notional.")
    remainingFund = MoneyField(source="remaining_fund", help_text="Cash at the day's close.")
    marketValue = MoneyField(source="market_value")
    tradePnl = MoneyField(source="trade_pnl")
    positionPnl = MoneyField(source="position_pnl")
    totalPnl = MoneyField(source="total_pnl")
    updated = TimeField(help_text="When the row was computed.")
    provisional = serializers.BooleanField(help_text="Computed before the day ended.")


class TickerDayOutputSerializer(serializers.Serializer):
    """One ticker's day on the broker's side (a `TickerDay`)."""

    ticker = serializers.CharField(source="ticker.symbol")
    date = serializers.DateField()
    nrTrades = serializers.IntegerField(source="nr_trades")
    volume = serializers.IntegerField()
    notional = MoneyField()
    vwap = PriceField()
    open = PriceField(help_text="First trade's price.")
    high = PriceField()
    low = PriceField()
    last = PriceField(help_text="Last trade's price.")
    buyVolume = serializers.IntegerField(source="buy_volume")
    sellVolume = serializers.IntegerField(source="sell_volume")
    litVolume = serializers.IntegerField(source="lit_volume")
    darkVolume = serializers.IntegerField(source="dark_volume")
    fees = MoneyField()
    close = PriceField(allow_null=True, help_text="Last daily bar on or before the day; null without any bar.")
    closeDate = serializers.DateField(source="close_date", allow_null=True)
    updated = TimeField()
    provisional = serializers.BooleanField()


class PositionOutputSerializer(serializers.Serializer):
    """One position at the day's close (a `PositionSnapshot`)."""

    ticker = serializers.CharField(source="ticker.symbol")
    quantity = serializers.IntegerField()
    averageCost = PriceField(source="average_cost", allow_null=True)
    close = PriceField(allow_null=True)
    closeDate = serializers.DateField(source="close_date", allow_null=True)
    marketValue = MoneyField(source="market_value")
    tradePnl = MoneyField(source="trade_pnl")
    positionPnl = MoneyField(source="position_pnl")
    totalPnl = MoneyField(source="total_pnl")


class CustomerPositionsOutputSerializer(serializers.Serializer):
    customerId = serializers.CharField(source="customer_id")
    date = serializers.DateField()
    provisional = serializers.BooleanField()
    positions = PositionOutputSerializer(many=True)


class PnlDayOutputSerializer(serializers.Serializer):
    """A `CustomerDay` as a day of the P&L series."""

    date = serializers.DateField()
    tradePnl = MoneyField(source="trade_pnl")
    positionPnl = MoneyField(source="position_pnl")
    totalPnl = MoneyField(source="total_pnl")
    cash = MoneyField(source="remaining_fund", help_text="Cash at the day's close (remainingFund).")
    marketValue = MoneyField(source="market_value")
    totalValue = serializers.SerializerMethodField()
    provisional = serializers.BooleanField()

    @extend_schema_field({"type": "string", "format": "decimal", "example": "6224998.25"})
    def get_totalValue(self, row: Any) -> str:
        return format_money(row.remaining_fund + row.market_value)


class CustomerPnlOutputSerializer(serializers.Serializer):
    customerId = serializers.CharField(source="customer_id")
    start = serializers.DateField()
    end = serializers.DateField()
    days = PnlDayOutputSerializer(many=True)


class ValuedPositionOutputSerializer(serializers.Serializer):
    """A `reporting.valuation.ValuedPosition`."""

    ticker = serializers.CharField()
    quantity = serializers.IntegerField()
    close = PriceField(allow_null=True, help_text="Null without any bar on or before the day (valued at 0).")
    closeDate = serializers.DateField(source="close_date", allow_null=True)
    marketValue = MoneyField(source="market_value")


class PortfolioOutputSerializer(serializers.Serializer):
    """A `reporting.valuation.Portfolio`, with its customer's id."""

    customerId = serializers.CharField(source="customer_id")
    date = serializers.DateField(source="portfolio.day")
    asOf = TimeField(source="portfolio.as_of", help_text="The moment the books were read as they stood.")
    cash = MoneyField(source="portfolio.cash")
    positions = ValuedPositionOutputSerializer(source="portfolio.positions", many=True)
    totalValue = MoneyField(source="portfolio.total_value")
