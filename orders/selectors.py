"""Order reads shared by the API, the sweeper, tests and the bench."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from django.db.models import Count, F, Max, QuerySet, Sum

from broker.models import Customer, Ticker
from orders.models import FINAL_CHILD_STATUSES, ChildOrder, Order, OrderStatus, Trade
from settlement import selectors as settlement_selectors
from settlement import services as settlement_services
from settlement.models import CASH_ASSET

CENT = Decimal("0.01")


def children_in_flight(*, parent: Order | None = None) -> QuerySet[ChildOrder]:
    """Children whose current routing attempt has not reached its venue yet (a match task is due)."""
    queryset = ChildOrder.objects.filter(attempt__gt=F("submitted_attempt")).exclude(status__in=FINAL_CHILD_STATUSES)
    return queryset.filter(parent=parent) if parent is not None else queryset


def flow_busy(*, order_ids: list[int] | None = None) -> bool:
    """True while any order (of `order_ids`, or any at all) still waits for routing or matching."""
    orders = Order.objects.filter(status=OrderStatus.NEW)
    children = children_in_flight()
    if order_ids is not None:
        orders = orders.filter(pk__in=order_ids)
        children = children.filter(parent_id__in=order_ids)
    return orders.exists() or children.exists()


def settlement_pending() -> bool:
    """True while a trade that is due has not been posted to the ledger yet."""
    from settlement.services import settlement_today

    return Trade.objects.filter(settlement_date__isnull=True, busted=False, settles_on__lte=settlement_today()).exists()


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    customer_id: str
    name: str
    settled_cash: Decimal
    unsettled_cash: Decimal
    reserved_cash: Decimal
    remaining_fund: Decimal
    total_commission_paid: Decimal
    nr_trades: int
    total_amount_invested: Decimal
    updated: datetime


def customer_summary(*, customer: Customer) -> CustomerSummary:
    """Cash from the ledger, buying power after reservations, and the customer's trade totals.

    `unsettledCash` is the net cash effect of trades not yet posted (sale proceeds less purchases and
    fees); it is not spendable until it settles. `totalAmountInvested` is the notional of all buys.
    """
    settled = settlement_selectors.cash_balance(customer_id=customer.pk)
    available = settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET)
    trades = Trade.objects.filter(customer=customer, busted=False)
    unsettled = Decimal(0)
    for direction, quantity, price, fee in trades.filter(settlement_date__isnull=True).values_list(
        "direction", "quantity", "price", "fee"
    ):
        notional = (price * quantity).quantize(CENT, rounding=ROUND_HALF_UP)
        unsettled += (-notional if direction == "Buy" else notional) - fee
    totals = trades.aggregate(fees=Sum("fee"), count=Count("pk"), last=Max("trade_date"))
    invested = Decimal(0)
    for quantity, price in trades.filter(direction="Buy").values_list("quantity", "price"):
        invested += (price * quantity).quantize(CENT, rounding=ROUND_HALF_UP)
    return CustomerSummary(
        customer_id=customer.customer_id,
        name=customer.name,
        settled_cash=settled.quantize(CENT),
        unsettled_cash=unsettled.quantize(CENT),
        reserved_cash=(settled - available).quantize(CENT),
        remaining_fund=available.quantize(CENT, rounding=ROUND_DOWN),
        total_commission_paid=(totals["fees"] or Decimal(0)).quantize(CENT),
        nr_trades=totals["count"],
        total_amount_invested=invested,
        updated=totals["last"] or customer.created_at,
    )


@dataclass(frozen=True, slots=True)
class HoldingRow:
    ticker: str
    quantity: int
    average_cost: Decimal | None
    market_price: Decimal | None
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal


def customer_holdings(*, customer: Customer) -> list[HoldingRow]:
    """Settled positions (and closed ones with realized P&L), valued at each ticker's reference price."""
    prices = dict(Ticker.objects.values_list("symbol", "reference_price"))
    rows = []
    for symbol, holding in sorted(settlement_selectors.holdings(customer_id=customer.pk).items()):
        price = prices.get(symbol)
        quantity = int(holding.quantity)
        value = (price * quantity).quantize(CENT) if price is not None else None
        unrealized = (value - holding.cost).quantize(CENT) if value is not None and quantity else None
        rows.append(
            HoldingRow(
                ticker=symbol,
                quantity=quantity,
                average_cost=holding.average_cost,
                market_price=price,
                market_value=value,
                unrealized_pnl=unrealized if quantity else Decimal(0),
                realized_pnl=holding.realized_pnl,
            )
        )
    return rows
