"""Order reads shared by the API, the sweeper, tests and the bench."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
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


# --- staff screens ------------------------------------------------------------------------------------

BLOTTER_LIMIT = 200


def blotter_orders(
    *, customer_id: str = "", ticker: str = "", status: str = "", limit: int = BLOTTER_LIMIT
) -> QuerySet[Order]:
    """The newest orders, optionally of one customer, ticker or status, for the blotter."""
    orders = Order.objects.select_related("customer", "ticker").order_by("-sequence")
    if customer_id:
        orders = orders.filter(customer__customer_id=customer_id)
    if ticker:
        orders = orders.filter(ticker__symbol__iexact=ticker)
    if status:
        orders = orders.filter(status=status)
    return orders[:limit]


def order_detail(*, order_id: str) -> Order | None:
    """One order with its child orders (and venues) and its trades, for the blotter's detail panel."""
    return (
        Order.objects.select_related("customer", "ticker")
        .prefetch_related("children__pool", "trades__pool")
        .filter(order_id=order_id)
        .first()
    )


def trades_search(
    *,
    customer_id: str = "",
    ticker: str = "",
    order_id: str = "",
    exchange: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
    include_busted: bool = False,
) -> QuerySet[Trade]:
    """Trades, newest first, filtered as the trades screen and its CSV export ask (dates inclusive, UTC)."""
    trades = Trade.objects.select_related("order", "customer", "ticker", "pool").order_by("-trade_date", "-id")
    if not include_busted:
        trades = trades.filter(busted=False)
    if customer_id:
        trades = trades.filter(customer__customer_id=customer_id)
    if ticker:
        trades = trades.filter(ticker__symbol__iexact=ticker)
    if order_id:
        trades = trades.filter(order__order_id=order_id)
    if exchange:
        trades = trades.filter(pool__name__iexact=exchange)
    if date_from:
        trades = trades.filter(trade_date__date__gte=date_from)
    if date_to:
        trades = trades.filter(trade_date__date__lte=date_to)
    return trades


@dataclass(frozen=True, slots=True)
class TickerQuote:
    symbol: str
    name: str
    last_price: Decimal | None
    day_low: Decimal | None
    day_high: Decimal | None
    as_of: datetime | None
    stale: bool


def ticker_quote(*, symbol: str) -> TickerQuote | None:
    """Last price and day range of an active ticker for the order ticket, as market data last stored them."""
    ticker = Ticker.objects.filter(symbol=symbol.strip().upper(), active=True).first()
    if ticker is None:
        return None
    return TickerQuote(
        symbol=ticker.symbol,
        name=ticker.name,
        last_price=ticker.last_price if ticker.last_price is not None else ticker.reference_price,
        day_low=ticker.day_low,
        day_high=ticker.day_high,
        as_of=ticker.quote_fetched_at,
        stale=ticker.stale,
    )


def active_symbols() -> list[str]:
    return list(Ticker.objects.filter(active=True).order_by("symbol").values_list("symbol", flat=True))
