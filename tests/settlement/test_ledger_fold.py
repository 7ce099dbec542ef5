"""Folded balances: buying power reads an account's folded sum and the entries after it, not its history.

`settlement.services.ledger_fold` may fold an entry only once no transaction can still add one below
it: these tests hold a real writer's transaction open on another connection while the fold runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F, Sum

from broker.models import Customer
from reporting.models import BreakKind
from reporting.reconciliation import check_folded_balances
from settlement import services as settlement_services
from settlement.models import CASH_ASSET, Account, AccountKind, LedgerEntry, LedgerFold, PostingPurpose
from tests.conftest import make_customers

pytestmark = pytest.mark.django_db(transaction=True)


def deposit(customer: Customer, amount: str) -> list[int]:
    """A staff cash deposit; the ids of the entries it wrote."""
    posted = settlement_services.movement_post(
        settlement_services.Movement(
            purpose=PostingPurpose.CASH_DEPOSIT,
            customer_id=customer.pk,
            asset=CASH_ASSET,
            amount=Decimal(amount),
            reason="test deposit",
            actor="test",
        )
    )
    return list(LedgerEntry.objects.filter(posting=posted.posting).values_list("pk", flat=True))


def cash_account(customer: Customer) -> Account:
    return Account.objects.get(kind=AccountKind.CUSTOMER_CASH, customer=customer, asset=CASH_ASSET)


def ledger_sum(customer: Customer) -> Decimal:
    """The balance the slow way: every entry of the customer's cash account."""
    total = LedgerEntry.objects.filter(account=cash_account(customer)).aggregate(total=Sum("amount"))["total"]
    return total or Decimal(0)


@contextmanager
def held_open(work: Callable[[], None]) -> Iterator[None]:
    """Run `work` in a transaction on another connection (a thread of its own) and keep that
    transaction open, uncommitted, for the duration of the block; it commits after."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                work()
                started.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert started.wait(timeout=30)
        yield
    finally:
        release.set()
        thread.join(timeout=30)


def fold_until_quiet() -> None:
    """Passes until one folds nothing and notes nothing: the first notes, the next folds."""
    for _ in range(3):
        settlement_services.ledger_fold()


def test_a_fold_never_passes_an_entry_whose_transaction_is_still_open() -> None:
    customers = make_customers()
    slow, quick = customers["000003"], customers["000004"]
    fold_until_quiet()
    funded = {customer.pk: ledger_sum(customer) for customer in (slow, quick)}
    assert cash_account(slow).folded_balance == funded[slow.pk]  # the initial funding, folded

    # a deposit on another connection takes its entry ids, and waits before committing
    taken: list[int] = []
    with held_open(lambda: taken.extend(deposit(slow, "100.00"))):
        # meanwhile another customer's deposit commits: its entry ids are above the open ones
        later = deposit(quick, "50.00")
        assert min(later) > max(taken)
        for _ in range(3):
            settlement_services.ledger_fold()
        # the fold noted the later ids but waits: folding them would put the open ones behind it for good
        assert LedgerFold.objects.get().upto < min(taken)
        assert settlement_services.available(customer_id=quick.pk, asset=CASH_ASSET) == funded[quick.pk] + 50
        assert settlement_services.available(customer_id=slow.pk, asset=CASH_ASSET) == funded[slow.pk]

    fold_until_quiet()
    assert LedgerFold.objects.get().upto >= max(later)
    for customer, deposited in ((slow, 100), (quick, 50)):
        account = cash_account(customer)
        assert account.folded_balance == ledger_sum(customer) == funded[customer.pk] + deposited
        assert settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET) == account.folded_balance
    assert cash_account(quick).folded_upto >= max(later)
    assert check_folded_balances() == []


def _ledger_rows_read(customer: Customer) -> int:
    """Ledger rows the pre-trade risk read touches for the customer's cash (EXPLAIN ANALYZE)."""
    sql, params = settlement_services._available_sql(customer_id=customer.pk, asset=CASH_ASSET)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT {sql}", params)
        (plan,) = cursor.fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def rows(node: dict[str, Any]) -> int:
        own = (
            node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == LedgerEntry._meta.db_table else 0
        )
        return own + sum(rows(child) for child in node.get("Plans", []))

    return rows(plan[0]["Plan"])


def test_buying_power_reads_only_the_entries_after_the_fold() -> None:
    customer = make_customers()["000003"]
    for _ in range(60):
        deposit(customer, "10.00")
    assert _ledger_rows_read(customer) == 61  # nothing folded yet: the whole history

    fold_until_quiet()
    assert _ledger_rows_read(customer) == 0
    for _ in range(3):
        deposit(customer, "1.00")
    assert _ledger_rows_read(customer) == 3  # the tail since the fold, and only this account's
    assert settlement_services.available(customer_id=customer.pk, asset=CASH_ASSET) == ledger_sum(customer)


def test_a_fold_applies_once_even_when_its_own_row_is_lost() -> None:
    customers = make_customers()
    for customer in customers.values():
        deposit(customer, "25.00")
    fold_until_quiet()
    before = {account.pk: account.folded_balance for account in Account.objects.all()}

    LedgerFold.objects.all().delete()  # the fold forgets where it stood; the accounts remember
    fold_until_quiet()

    assert {account.pk: account.folded_balance for account in Account.objects.all()} == before
    assert check_folded_balances() == []


def test_a_second_fold_skips_its_turn_instead_of_waiting() -> None:
    make_customers()

    def take_the_fold_lock() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [settlement_services.FOLD_LOCK])

    with held_open(take_the_fold_lock):
        assert settlement_services.ledger_fold() is None
    assert settlement_services.ledger_fold() is not None


def test_reconciliation_names_an_account_whose_folded_balance_is_wrong() -> None:
    customer = make_customers()["000003"]
    fold_until_quiet()
    assert check_folded_balances() == []

    Account.objects.filter(pk=cash_account(customer).pk).update(folded_balance=F("folded_balance") + 1)

    (found,) = check_folded_balances()
    assert found.kind == BreakKind.FOLDED_BALANCE_MISMATCH
    assert found.records["account"] == cash_account(customer).pk
    assert found.records["customer"] == customer.pk
