"""A customer account's running balance: kept by the database, equal to the sum of its entries, and what
order entry reads instead of the account's whole history (settlement/migrations/0008_account_balance.py)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from broker.models import Customer
from orders import services
from orders.models import Trade
from settlement.models import CASH_ASSET, CUSTOMER_ACCOUNT_KINDS, Account, AccountKind, LedgerEntry
from settlement.services import Movement, available, movement_post
from tests.conftest import Market, drive, place
from tests.invariants import account_balance_violations


def _entries_sum(account: Account) -> Decimal:
    total = sum((entry.amount for entry in LedgerEntry.objects.filter(account=account)), Decimal(0))
    return Decimal(total)


def _ledger_reads() -> int:
    """Scans of the ledger's table by this transaction so far (its own statistics)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'settlement_ledgerentry'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


@pytest.mark.django_db
def test_every_customer_account_s_balance_is_the_sum_of_its_entries_and_the_house_keeps_none(
    market: Market,
) -> None:
    # given funded customers who bought and sold, settled, and moved cash and shares by hand
    for direction, price in (("Buy", "260.00"), ("Sell", "240.00"), ("Buy", "260.00")):
        drive(place(direction=direction, type="Limit", quantity=300, price=price, timeInForce="IOC"))
    services.trades_settle(trade_ids=list(Trade.objects.values_list("pk", flat=True)))
    two, three = (Customer.objects.get(customer_id=number).pk for number in ("000002", "000003"))
    movement_post(Movement("CashDeposit", two, CASH_ASSET, Decimal("1000.00"), "wire", "ops"))
    movement_post(Movement("CashWithdrawal", two, CASH_ASSET, Decimal("300.00"), "payout", "ops"))
    movement_post(Movement("Journal", two, "COIN", Decimal(7), "shares", "ops", three))

    # then each customer account's balance is what its entries add up to; the house's accounts keep none
    customer_accounts = list(Account.objects.filter(kind__in=CUSTOMER_ACCOUNT_KINDS))
    assert len(customer_accounts) >= 4
    for account in customer_accounts:
        assert account.balance == _entries_sum(account), account
    assert set(Account.objects.exclude(kind__in=CUSTOMER_ACCOUNT_KINDS).values_list("balance", flat=True)) == {None}
    cash = Account.objects.get(kind=AccountKind.CUSTOMER_CASH, customer_id=two)
    assert cash.balance == _entries_sum(cash) != 0
    assert account_balance_violations() == []


@pytest.mark.django_db
def test_order_entry_checks_funds_without_reading_the_ledger(market: Market) -> None:
    # given a customer with a settled trade (entries on its cash and securities accounts)
    drive(place(direction="Buy", type="Limit", quantity=100, price="260.00", timeInForce="IOC"))
    services.trades_settle(trade_ids=list(Trade.objects.values_list("pk", flat=True)))
    customer = Customer.objects.get(customer_id="000002")

    # when it enters a buy and a sell, then neither reads a ledger entry, and both see the same balance
    before = _ledger_reads()
    assert place(direction="Buy", type="Limit", quantity=10, price="250.00").status == "New"
    assert place(direction="Sell", type="Limit", quantity=10, price="270.00").status == "New"
    assert _ledger_reads() == before
    cash = Account.objects.get(kind=AccountKind.CUSTOMER_CASH, customer=customer)
    assert available(customer_id=customer.pk, asset=CASH_ASSET) < _entries_sum(cash)  # less the reservation


@pytest.mark.django_db(transaction=True)
def test_journals_both_ways_at_once_neither_wait_forever_nor_lose_a_cent(market: Market) -> None:
    # given two customers sending each other cash and shares from two threads at once, many times
    two, three = (Customer.objects.get(customer_id=number).pk for number in ("000002", "000003"))
    start = threading.Barrier(2)
    failures: list[str] = []

    def send(source: int, target: int, asset: str, amount: Decimal) -> None:
        start.wait()
        try:
            for number in range(15):
                movement_post(Movement("Journal", source, asset, amount, f"ping {number}", "ops", target))
        except Exception as error:  # a deadlock would surface here
            failures.append(repr(error))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=send, args=(two, three, CASH_ASSET, Decimal("10.00"))),
        threading.Thread(target=send, args=(three, two, "COIN", Decimal(3))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # then every journal posted and every balance is still the sum of its account's entries
    assert failures == []
    for account in Account.objects.filter(kind__in=CUSTOMER_ACCOUNT_KINDS, customer_id__in=(two, three)):
        assert account.balance == _entries_sum(account), account
    assert account_balance_violations() == []
