"""A seeded randomized day through the real worker: every invariant holds, the books reconcile, and
reconciliation catches exactly what is tampered with afterwards."""

from __future__ import annotations

import contextlib
import random
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from django.db import connection, transaction

from broker import services as broker_services
from broker.exceptions import Conflict
from broker.models import Customer
from orders import selectors as order_selectors
from orders import services
from orders.models import Order, OrderStatus, Trade
from pools import services as pool_services
from pools.models import Execution, PoolKind
from reporting import aggregation
from reporting.models import BreakKind, CustomerDay, PositionSnapshot, RunStatus, TickerDay
from reporting.reconciliation import reconciliation_run
from settlement import services as settlement_services
from settlement.models import Account, AccountKind, LedgerEntry
from settlement.selectors import cash_balance, holdings
from tests.conftest import make_pools, make_ticker, place, staff_client
from tests.integration.conftest import Stack, wait_until_quiet
from tests.invariants import all_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

CUSTOMERS = 20
ORDERS = 2000
TICKERS = {"COIN": Decimal("256.62"), "AAPL": Decimal("170.73")}


def _setup() -> list[str]:
    make_pools()
    for symbol, price in TICKERS.items():
        ticker = make_ticker(symbol, str(price))
        pool_services.books_ensure(ticker_id=ticker.pk)
    ids = []
    for number in range(1, CUSTOMERS + 1):
        customer = broker_services.customer_upsert(
            customer_id=f"{number:06d}", name=f"Random {number}", email=f"r{number}@example.com",
            initial_funds=Decimal(random.Random(number).choice([50_000, 250_000, 1_000_000])),
        )  # fmt: skip
        settlement_services.customer_fund_initial(customer=customer)
        for symbol, price in TICKERS.items():
            settlement_services.customer_transfer_in(
                customer=customer, symbol=symbol, quantity=2000, unit_cost=price, reference=f"r:{number}:{symbol}"
            )
        ids.append(customer.customer_id)
    return ids


def test_a_randomized_day_keeps_every_invariant(stack: Stack) -> None:
    # given 20 funded customers holding both tickers
    customer_ids = _setup()
    rng = random.Random(20240308)
    placed: list[Order] = []

    # when 2,000 random orders arrive (some cancelled while the worker is busy with them)
    for _ in range(ORDERS):
        symbol = rng.choice(list(TICKERS))
        reference = TICKERS[symbol]
        body: dict[str, object] = {
            "ticker": symbol,
            "direction": rng.choice(["Buy", "Sell"]),
            "quantity": rng.randint(1, 30) * 10,
        }
        kind = rng.random()
        if kind < 0.15:
            body.update(type="Market", timeInForce=rng.choice(["Day", "IOC"]))
        else:
            offset = Decimal(rng.randint(-80, 80)) / 100
            body.update(type="Limit", price=str(reference + offset), timeInForce="IOC" if kind < 0.35 else "Day")
        placed.append(place(rng.choice(customer_ids), **body))
        if placed and rng.random() < 0.1:
            victim = rng.choice(placed)
            victim.refresh_from_db()
            if not victim.is_final:
                # the worker may finish it first: then the cancel is refused, as a client would see (409)
                with contextlib.suppress(Conflict):
                    services.order_cancel(order_id=victim.pk, actor="test")
    wait_until_quiet(timeout=600)

    # then every order reached a final state or rests visibly, and nothing broke any invariant
    assert Order.objects.count() == ORDERS
    assert not Order.objects.filter(status=OrderStatus.NEW).exists()
    statuses = set(Order.objects.values_list("status", flat=True))
    assert {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED} <= statuses
    assert all_violations() == []
    for customer in Customer.objects.all():
        assert cash_balance(customer_id=customer.pk) >= 0
        assert all(position.quantity >= 0 for position in holdings(customer_id=customer.pk).values())
    # and reconciliation agrees: zero breaks, and it says so
    clean = reconciliation_run(triggered_by="test")
    assert clean.status == RunStatus.CLEAN
    assert clean.breaks_found == 0
    assert "0 breaks" in clean.summary
    # and the nightly aggregation of the day equals a plain recomputation over the same trades
    _assert_aggregation_matches_trades()
    # and every customer's activities add up to its cash and shares
    _assert_activities_match_the_books()

    # when one ledger entry, already folded into its account's balance, is tampered with and one venue
    # execution goes missing
    fee_entry = LedgerEntry.objects.filter(account__kind=AccountKind.FEE_INCOME).order_by("pk").first()
    execution = Execution.objects.filter(busted=False, trades__isnull=False).order_by("pk").first()
    assert fee_entry is not None
    assert execution is not None
    for _ in range(2):  # the day is quiet: one pass notes what the next one folds
        settlement_services.ledger_fold()
    assert Account.objects.get(pk=fee_entry.account_id).folded_upto >= fee_entry.pk
    with transaction.atomic(), connection.cursor() as cursor:
        # the ledger refuses UPDATE and a trade's execution is protected: bypass both, as a bad actor would
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE settlement_ledgerentry SET amount = amount + 1 WHERE id = %s", [fee_entry.pk])
        cursor.execute("DELETE FROM pools_execution WHERE id = %s", [execution.pk])
    tampered = reconciliation_run(triggered_by="test")

    # then reconciliation reports exactly those breaks: the entry both unbalances the ledger and no longer
    # adds up to its account's folded balance
    assert tampered.status == RunStatus.BREAKS
    kinds = sorted(tampered.breaks.values_list("kind", flat=True))
    assert kinds == [
        BreakKind.FOLDED_BALANCE_MISMATCH,
        BreakKind.LEDGER_UNBALANCED,
        BreakKind.TRADE_WITHOUT_EXECUTION,
    ]
    connection.close()


CENT = Decimal("0.01")


def _assert_activities_match_the_books() -> None:
    """Every customer's activities (every page, over the API) against the ledger and the summary."""
    from django.conf import settings

    time.sleep(settings.ACTIVITY_HORIZON_SECONDS)  # the last movements reach the horizon
    staff = staff_client()
    for customer in Customer.objects.all():
        rows: list[dict[str, Any]] = []
        page = staff.get(f"/api/customers/{customer.customer_id}/activities", {"pageSize": 500})
        while True:
            assert page.status_code == 200
            rows += page.json()["activities"]
            if page.json()["next"] is None:
                break
            page = staff.get(page.json()["next"])
        assert len({row["activityId"] for row in rows}) == len(rows)
        summary = order_selectors.customer_summary(customer=customer)
        assert sum(Decimal(row["netAmount"]) for row in rows) == summary.settled_cash + summary.unsettled_cash
        assert sum(Decimal(row["netAmount"]) for row in rows if row["settled"]) == cash_balance(customer_id=customer.pk)
        shares: dict[str, Decimal] = {}
        for row in rows:
            if row["quantity"] is not None and row["settled"]:
                shares[row["symbol"]] = shares.get(row["symbol"], Decimal(0)) + Decimal(row["quantity"])
        held = {symbol: position.quantity for symbol, position in holdings(customer_id=customer.pk).items()}
        assert {symbol: quantity for symbol, quantity in shares.items() if quantity or symbol in held} == held


def _assert_aggregation_matches_trades() -> None:
    """Every customer's and ticker's rows, for every day the trades span (a run across midnight in New
    York spans two), against Python sums over the trades; the last day's cash against the ledger."""
    first, last = aggregation.first_trade_day(), aggregation.today()
    assert first is not None
    days = aggregation.days_to_report(first, last)
    aggregation.days_aggregate(days)

    trades = list(Trade.objects.filter(busted=False).select_related("pool", "ticker").order_by("trade_date", "pk"))
    assert len(trades) > 500
    by_day: dict[object, list[Trade]] = {}
    for trade in trades:
        by_day.setdefault(aggregation.trading_day(trade.trade_date), []).append(trade)
    assert set(by_day) <= set(days)

    def notional(trade: Trade) -> Decimal:
        return (trade.price * trade.quantity).quantize(CENT, rounding=ROUND_HALF_UP)

    cash = {customer.pk: cash_balance(customer_id=customer.pk) for customer in Customer.objects.all()}
    totals: dict[int, dict[str, Decimal]] = {}
    for day in days:
        day_trades = by_day.get(day, [])
        for customer in Customer.objects.all():
            mine = [trade for trade in day_trades if trade.customer_id == customer.pk]
            total = totals.setdefault(customer.pk, {"nr": Decimal(0), "fees": Decimal(0), "invested": Decimal(0)})
            total["nr"] += len(mine)
            total["fees"] += sum((trade.fee for trade in mine), Decimal(0))
            total["invested"] += sum((notional(trade) for trade in mine if trade.direction == "Buy"), Decimal(0))
            row = CustomerDay.objects.get(customer=customer, date=day)
            assert row.nr_trades == len(mine)
            assert row.buy_notional == sum((notional(t) for t in mine if t.direction == "Buy"), Decimal(0))
            assert row.sell_notional == sum((notional(t) for t in mine if t.direction == "Sell"), Decimal(0))
            assert row.commission_paid == sum((t.fee for t in mine), Decimal(0))
            assert (row.total_nr_trades, row.total_commission_paid, row.total_amount_invested) == (
                total["nr"],
                total["fees"],
                total["invested"],
            )
        for symbol in TICKERS:
            theirs = [trade for trade in day_trades if trade.ticker.symbol == symbol]
            stored = TickerDay.objects.filter(ticker__symbol=symbol, date=day).first()
            if not theirs:
                assert stored is None
                continue
            assert stored is not None
            volume = sum(trade.quantity for trade in theirs)
            value = sum((trade.price * trade.quantity for trade in theirs), Decimal(0))
            assert (stored.nr_trades, stored.volume) == (len(theirs), volume)
            assert stored.notional == sum((notional(trade) for trade in theirs), Decimal(0))
            assert stored.vwap == (value / volume).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
            assert (stored.open, stored.last) == (theirs[0].price, theirs[-1].price)
            assert (stored.high, stored.low) == (max(t.price for t in theirs), min(t.price for t in theirs))
            assert stored.buy_volume == sum(t.quantity for t in theirs if t.direction == "Buy")
            assert stored.lit_volume == sum(t.quantity for t in theirs if t.pool.kind == PoolKind.LIT)
            assert stored.lit_volume + stored.dark_volume == volume
            assert stored.fees == sum((t.fee for t in theirs), Decimal(0))

    # The last day's close: the ledger's cash is the remaining fund, the holdings are the positions.
    for customer in Customer.objects.all():
        row = CustomerDay.objects.get(customer=customer, date=days[-1])
        assert row.remaining_fund == cash[customer.pk]
        positions = dict(
            PositionSnapshot.objects.filter(customer=customer, date=days[-1]).values_list("ticker__symbol", "quantity")
        )
        held = {symbol: int(h.quantity) for symbol, h in holdings(customer_id=customer.pk).items() if h.quantity}
        assert {symbol: quantity for symbol, quantity in positions.items() if quantity} == held
