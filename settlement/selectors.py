"""Ledger reads: balances, per-asset totals and holdings, all derived from the entries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from settlement.models import CASH_ASSET, AccountKind, LedgerEntry, Leg, PostingPurpose

ZERO = Decimal("0")
PRICE_PLACES = Decimal("0.0001")


def cash_balance(*, customer_id: int) -> Decimal:
    """Settled cash: every posted movement of the customer's cash account."""
    total = LedgerEntry.objects.filter(
        account__kind=AccountKind.CUSTOMER_CASH, account__customer_id=customer_id
    ).aggregate(total=Sum("amount"))["total"]
    return total if total is not None else ZERO


def asset_totals() -> dict[str, Decimal]:
    """The sum of all entries per asset: zero for every asset in a consistent double-entry ledger."""
    rows = LedgerEntry.objects.values("asset").annotate(total=Sum("amount")).values_list("asset", "total")
    return dict(rows)


@dataclass
class Holding:
    symbol: str
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # of the shares still held, at their average cost
    realized_pnl: Decimal = ZERO

    @property
    def average_cost(self) -> Decimal | None:
        return (self.cost / self.quantity).quantize(PRICE_PLACES) if self.quantity else None


def holdings(*, customer_id: int) -> dict[str, Holding]:
    """Positions from transfers in and settled trades, replayed in posting order (average cost).

    A buy adds its shares at their price; a sell realizes (price - average cost) per share sold and
    reduces the cost at the average. Fees are not part of the cost (they are shown as commissions).
    """
    entries = (
        LedgerEntry.objects.filter(
            account__customer_id=customer_id,
            purpose__in=(
                PostingPurpose.TRADE_SETTLEMENT,
                PostingPurpose.SECURITIES_TRANSFER_IN,
                PostingPurpose.TRADE_REVERSAL,
                PostingPurpose.JOURNAL,
            ),
            leg__in=(Leg.CASH, Leg.SECURITIES, Leg.FUNDING, Leg.JOURNAL),
        )
        .order_by("posting_id", "id")
        .values_list("posting_id", "leg", "asset", "amount", "posting__unit_cost", "purpose")
    )
    per_posting: dict[int, dict[str, object]] = defaultdict(dict)
    for posting_id, leg, asset, amount, unit_cost, purpose in entries:
        per_posting[posting_id]["reversal"] = purpose == PostingPurpose.TRADE_REVERSAL
        per_posting[posting_id]["journal"] = purpose == PostingPurpose.JOURNAL
        if asset != CASH_ASSET:
            per_posting[posting_id].update(symbol=asset, shares=amount)
            if unit_cost is not None:  # a transfer in or journal: its cost basis is on the posting
                per_posting[posting_id]["cash"] = -unit_cost * amount
        elif leg == Leg.CASH:
            per_posting[posting_id]["cash"] = amount
    positions: dict[str, Holding] = {}
    for posting_id in sorted(per_posting):
        legs = per_posting[posting_id]
        if "symbol" not in legs:
            continue  # a cash journal: no shares moved
        # No cash leg: the trade's notional rounded to 0.00 (a sub-penny price), and the ledger keeps
        # no zero entries. The shares still moved, for nothing.
        cash = Decimal(str(legs.get("cash", ZERO)))
        symbol, shares = str(legs["symbol"]), Decimal(str(legs["shares"]))
        holding = positions.setdefault(symbol, Holding(symbol=symbol))
        price = -cash / shares
        if legs["journal"] and shares < 0:
            # Shares journaled to another customer leave at the average cost: nothing is realized.
            average = holding.cost / holding.quantity if holding.quantity else price
            holding.cost += average * shares
            holding.quantity += shares
        elif legs["reversal"] and shares < 0:
            # Undoing a buy takes that lot out at its own price: no P&L is realized by a correction.
            holding.cost += -cash
            holding.quantity += shares
        elif legs["reversal"]:
            # Undoing a sell puts the shares back at today's average cost and takes back its P&L.
            average = holding.cost / holding.quantity if holding.quantity else price
            holding.realized_pnl -= (price - average) * shares
            holding.cost += average * shares
            holding.quantity += shares
        elif shares > 0:
            holding.cost += -cash
            holding.quantity += shares
        else:
            sold = -shares
            average = holding.cost / holding.quantity if holding.quantity else price
            holding.realized_pnl += (price - average) * sold
            holding.cost -= average * sold
            holding.quantity -= sold
    for holding in positions.values():
        holding.realized_pnl = holding.realized_pnl.quantize(Decimal("0.01"))
        holding.cost = holding.cost.quantize(Decimal("0.01"))
    return positions
