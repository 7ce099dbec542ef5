"""The ledger: delivery versus payment, exactly once, balanced, append-only; settlement cycles; holdings."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from orders import services
from orders.models import OrderEvent, Trade
from settlement import services as settlement_services
from settlement.models import Account, AccountKind, LedgerEntry, Leg, Posting, PostingPurpose
from settlement.selectors import asset_totals, cash_balance, holdings
from tests.conftest import Market, drive, place
from tests.invariants import ledger_violations

pytestmark = pytest.mark.django_db


def settle_all() -> int:
    return services.trades_settle(trade_ids=list(Trade.objects.order_by("pk").values_list("pk", flat=True)))


def test_t0_settlement_posts_both_legs_and_the_fee_of_every_trade(market: Market) -> None:
    # given a filled buy whose trades are not settled yet
    customer = market["customers"]["000002"]
    order = place(quantity=2500, price="260.00")
    drive(order)
    trades = list(Trade.objects.filter(order=order))
    assert trades
    assert all(trade.settlement_date is None and trade.settles_on is not None for trade in trades)

    # when they settle
    posted = settle_all()

    # then each trade has one posting, cash and shares moved, and the books balance
    assert posted == len(trades)
    assert Posting.objects.filter(purpose=PostingPurpose.TRADE_SETTLEMENT).count() == len(trades)
    notional = sum((t.price * t.quantity).quantize(Decimal("0.01")) for t in trades)
    fees = sum(t.fee for t in trades)
    assert cash_balance(customer_id=customer.pk) == customer.initial_funds - notional - fees
    assert holdings(customer_id=customer.pk)["COIN"].quantity == 5000 + 2500  # opening position + the buy
    assert set(asset_totals().values()) == {Decimal(0)}
    assert all(trade.settlement_date is not None for trade in Trade.objects.filter(order=order))
    assert ledger_violations() == []


def test_settling_again_changes_nothing(market: Market) -> None:
    # given settled trades
    drive(place(quantity=1500, price="260.00"))
    settle_all()
    before = (LedgerEntry.objects.count(), Posting.objects.count(), OrderEvent.objects.count())

    # when every trade is settled again (a redelivered task)
    again = settle_all()

    # then no posting, no entry and no event was added
    assert again == 0
    assert (LedgerEntry.objects.count(), Posting.objects.count(), OrderEvent.objects.count()) == before


def test_sell_moves_shares_out_and_cash_in(market: Market) -> None:
    # given a customer who bought, then sells part
    customer = market["customers"]["000003"]
    drive(place("000003", quantity=400, price="260.00"))
    drive(place("000003", direction="Sell", quantity=150, price="250.00"))
    settle_all()

    # then the position and cash follow both trades exactly
    assert holdings(customer_id=customer.pk)["COIN"].quantity == 5000 + 400 - 150
    assert ledger_violations() == []


@pytest.mark.parametrize(
    ("traded_at", "settles_on"),
    [
        (datetime(2024, 3, 8, 15, 0, tzinfo=UTC), date(2024, 3, 11)),  # Friday -> Monday
        (datetime(2024, 3, 28, 18, 0, tzinfo=UTC), date(2024, 4, 1)),  # Thursday -> Monday (Good Friday closed)
        (datetime(2024, 3, 5, 18, 0, tzinfo=UTC), date(2024, 3, 6)),  # Tuesday -> Wednesday
        (datetime(2024, 3, 9, 18, 0, tzinfo=UTC), date(2024, 3, 12)),  # Saturday trade: Monday's session, T+1
    ],
)
def test_t1_counts_xnys_business_days(settings: Any, traded_at: datetime, settles_on: date) -> None:
    settings.SETTLEMENT_CYCLE = "T+1"
    assert settlement_services.settlement_due_on(traded_at=traded_at) == settles_on


def test_t0_settles_on_the_new_york_trade_date(settings: Any) -> None:
    settings.SETTLEMENT_CYCLE = "T+0"
    # 02:00 UTC on the 9th is still the 8th in New York
    assert settlement_services.settlement_due_on(traded_at=datetime(2024, 3, 9, 2, 0, tzinfo=UTC)) == date(2024, 3, 8)


def test_t1_trade_settles_only_when_due(market: Market, settings: Any) -> None:
    # given trades under T+1, made on Friday 2024-03-08
    settings.SETTLEMENT_CYCLE = "T+1"
    drive(place(quantity=500, price="260.00"))
    Trade.objects.update(trade_date=datetime(2024, 3, 8, 15, 0, tzinfo=UTC), settles_on=date(2024, 3, 11))

    # when the scheduled run goes on Friday, then on Monday
    on_friday = services.trades_settle_due(today=date(2024, 3, 8))
    on_monday = services.trades_settle_due(today=date(2024, 3, 11))

    # then nothing settled on Friday and everything on Monday
    assert on_friday == 0
    assert on_monday == Trade.objects.count() > 0
    assert not Trade.objects.filter(settlement_date__isnull=True).exists()


def test_initial_funding_is_posted_once(market: Market) -> None:
    customer = market["customers"]["000004"]
    assert settlement_services.customer_fund_initial(customer=customer) is None  # already funded by the fixture
    assert cash_balance(customer_id=customer.pk) == customer.initial_funds
    assert Posting.objects.filter(customer=customer, purpose=PostingPurpose.INITIAL_FUNDING).count() == 1


def test_holdings_use_average_cost_and_realize_pnl(market: Market) -> None:
    # given buys of 300 @ 100 and 100 @ 104, then a sell of 200 @ 110, posted straight to the ledger
    # (in IBM, which the customer held none of before)
    customer = market["customers"]["000005"]
    pool = market["pools"]["EDGA"]
    for ref, (direction, quantity, price) in enumerate(
        [("Buy", 300, "100.00"), ("Buy", 100, "104.00"), ("Sell", 200, "110.00")], start=9000
    ):
        settlement_services.trade_post(
            trade=settlement_services.TradeToSettle(
                trade_ref=ref, customer_id=customer.pk, pool_id=pool.pk, symbol="IBM",
                direction=direction, quantity=quantity, price=Decimal(price), fee=Decimal("0.10"),
            )
        )  # fmt: skip

    # then 200 shares remain at the average cost of 101, and (110 - 101) x 200 was realized
    position = holdings(customer_id=customer.pk)["IBM"]
    assert position.quantity == 200
    assert position.average_cost == Decimal("101.0000")
    assert position.realized_pnl == Decimal("1800.00")
    assert cash_balance(customer_id=customer.pk) == customer.initial_funds - 30000 - 10400 + 22000 - Decimal("0.30")


def test_a_trade_leg_cannot_be_posted_twice(market: Market) -> None:
    # given a posted trade
    drive(place(quantity=100, price="260.00"))
    settle_all()
    entry = LedgerEntry.objects.filter(purpose=PostingPurpose.TRADE_SETTLEMENT, leg=Leg.CASH).first()
    assert entry is not None

    # when someone inserts the same trade's cash leg into the same account again, the database refuses
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            posting=entry.posting, account=entry.account, asset=entry.asset, amount=entry.amount, leg=entry.leg,
            purpose=entry.purpose, trade_ref=entry.trade_ref, trade_version=entry.trade_version,
        )  # fmt: skip


def test_the_database_refuses_an_unbalanced_posting(market: Market) -> None:
    customer = market["customers"]["000006"]
    account = Account.objects.get(kind=AccountKind.CUSTOMER_CASH, customer=customer)

    # given a posting with one lonely entry, inside a savepoint
    savepoint = transaction.savepoint()
    posting = Posting.objects.create(purpose=PostingPurpose.TRADE_SETTLEMENT, customer=customer, trade_ref=1)
    LedgerEntry.objects.create(
        posting=posting, account=account, asset="USD", amount=Decimal("5"), leg=Leg.CASH,
        purpose=posting.purpose, trade_ref=1,
    )  # fmt: skip

    # when its constraints are checked (what COMMIT does), the database refuses it
    with pytest.raises(IntegrityError, match="does not balance"), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    transaction.savepoint_rollback(savepoint)


def test_ledger_entries_cannot_be_changed_or_deleted(market: Market) -> None:
    entry = LedgerEntry.objects.first()
    assert entry is not None

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("1"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()


def test_accounts_are_found_by_their_whole_key_and_created_once(market: Market) -> None:
    # given the market's accounts (every customer's cash and COIN shares, the venues' and the house's)
    customers = market["customers"]
    a, b = customers["000003"].pk, customers["000004"].pk
    pool = next(iter(market["pools"].values())).pk
    wanted: list[settlement_services.AccountKey] = [
        (AccountKind.CUSTOMER_CASH, a, None, "USD"),
        (AccountKind.CUSTOMER_SECURITIES, b, None, "COIN"),
        (AccountKind.CUSTOMER_SECURITIES, b, None, "NEWCO"),  # none yet: created
        (AccountKind.VENUE_CLEARING, None, pool, "USD"),
        (AccountKind.FEE_INCOME, None, None, "USD"),
    ]
    have = {(acc.kind, acc.customer_id, acc.pool_id, acc.asset) for acc in Account.objects.all()}
    existing = [key for key in wanted if key in have]
    assert (AccountKind.CUSTOMER_SECURITIES, b, None, "COIN") in existing
    before = Account.objects.count()

    # when they are asked for (the customers and the house have other accounts in these assets too)
    found = settlement_services._accounts(wanted)

    # then exactly these come back, each the account of its own key, and only the missing ones were created
    assert set(found) == set(wanted)
    for (kind, customer_id, pool_id, asset), account in found.items():
        assert (account.kind, account.customer_id, account.pool_id, account.asset) == (
            kind,
            customer_id,
            pool_id,
            asset,
        )
    assert Account.objects.count() == before + len(wanted) - len(existing)
    assert settlement_services._accounts(wanted) == found
