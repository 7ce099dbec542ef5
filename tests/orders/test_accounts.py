"""Account movements: staff deposits, withdrawals and journals (audited, idempotent, refused when they
would leave an account negative, one at a time under the customers' locks), and the activities that
list every movement of cash and shares and add up to the balances."""

from __future__ import annotations

import threading
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from broker.models import Customer
from orders import roles, selectors, services
from orders.models import Trade
from reporting.reconciliation import check_customer_cash, check_holdings
from settlement.models import CASH_ASSET, LedgerEntry, Posting
from settlement.selectors import cash_balance, holdings
from settlement.services import Movement, available, movement_post
from tests.conftest import Market, client_for, drive, place, staff_client
from tests.staff import staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_horizon(settings: Any) -> None:
    # The test's writes are its own transaction's: nothing else is open, no margin is needed.
    settings.ACTIVITY_HORIZON_SECONDS = 0


def operations() -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=staff_user("ops-desk", roles.OPERATIONS))
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def pk(customer_id: str) -> int:
    return Customer.objects.get(customer_id=customer_id).pk


def all_activities(client: APIClient, customer_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every page, following `next`."""
    found: list[dict[str, Any]] = []
    response = client.get(f"/api/customers/{customer_id}/activities", params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        found += body["activities"]
        if body["next"] is None:
            return found
        response = client.get(body["next"])


# --- Deposits, withdrawals and journals -----------------------------------------------------------


def test_a_deposit_is_posted_once_per_reference_with_who_and_why(market: Market) -> None:
    before = cash_balance(customer_id=pk("000002"))
    client = operations()

    # when Operations deposits, then posts the same reference again
    body = {"type": "CSD", "amount": "2500.00", "reason": "wire 77", "reference": "wire-77"}
    first = client.post("/api/customers/000002/cash-movements", body, format="json")
    again = client.post("/api/customers/000002/cash-movements", body, format="json")

    # then the cash moved once, and the posting says who and why
    assert first.status_code == 201, first.content
    assert again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["amount"] == "2500.00"
    assert first.json()["postedBy"] == "ops-desk"
    assert cash_balance(customer_id=pk("000002")) == before + Decimal("2500.00")
    posting = Posting.objects.get(reference="wire-77")
    assert (posting.actor, posting.description) == ("ops-desk", "wire 77")


def test_a_withdrawal_may_not_take_what_open_orders_hold(market: Market) -> None:
    # given a customer whose open buy order holds part of its cash
    customer = pk("000002")
    place(direction="Buy", type="Limit", quantity=100, price="1.00")  # rests far below the market
    free = available(customer_id=customer, asset=CASH_ASSET)
    assert free < cash_balance(customer_id=customer)
    entries = LedgerEntry.objects.count()

    # when Operations withdraws a cent more than is free
    response = operations().post(
        "/api/customers/000002/cash-movements",
        {"type": "CSW", "amount": str(free + Decimal("0.01")), "reason": "client asked"},
        format="json",
    )

    # then it is refused, naming the figures, and nothing was written
    assert response.status_code == 409
    assert "negative" in response.json()["amount"][0]
    assert LedgerEntry.objects.count() == entries
    # and exactly what is free can go
    response = operations().post(
        "/api/customers/000002/cash-movements",
        {"type": "CSW", "amount": str(free), "reason": "client asked"},
        format="json",
    )
    assert response.status_code == 201
    assert available(customer_id=customer, asset=CASH_ASSET) == 0


def test_journals_move_cash_and_shares_and_the_shares_keep_their_cost(market: Market) -> None:
    sender, receiver = pk("000002"), pk("000003")
    cost = holdings(customer_id=sender)["COIN"].average_cost
    cash = {customer: cash_balance(customer_id=customer) for customer in (sender, receiver)}
    shares = {customer: holdings(customer_id=customer)["COIN"].quantity for customer in (sender, receiver)}
    client = operations()

    cash_journal = client.post(
        "/api/journals",
        {"type": "JNLC", "fromCustomerId": "000002", "toCustomerId": "000003", "amount": "100.50", "reason": "gift"},
        format="json",
    )
    share_journal = client.post(
        "/api/journals",
        {
            "type": "JNLS",
            "fromCustomerId": "000002",
            "toCustomerId": "000003",
            "symbol": "COIN",
            "quantity": 40,
            "reason": "family transfer",
        },
        format="json",
    )

    assert cash_journal.status_code == 201, cash_journal.content
    assert share_journal.status_code == 201, share_journal.content
    assert share_journal.json()["quantity"] == 40
    assert cash_balance(customer_id=sender) == cash[sender] - Decimal("100.50")
    assert cash_balance(customer_id=receiver) == cash[receiver] + Decimal("100.50")
    after = {customer: holdings(customer_id=customer)["COIN"] for customer in (sender, receiver)}
    assert after[sender].quantity == shares[sender] - 40
    assert after[receiver].quantity == shares[receiver] + 40
    # the shares left at the sender's average cost: nothing realized, the average unchanged
    assert after[sender].realized_pnl == 0
    assert after[sender].average_cost == cost
    # and reconciliation finds the books as they should be
    assert check_customer_cash() == []
    assert check_holdings() == []


def test_more_shares_than_available_are_refused(market: Market) -> None:
    have = holdings(customer_id=pk("000002"))["COIN"].quantity
    response = operations().post(
        "/api/journals",
        {
            "type": "JNLS",
            "fromCustomerId": "000002",
            "toCustomerId": "000003",
            "symbol": "COIN",
            "quantity": int(have) + 1,
            "reason": "too many",
        },
        format="json",
    )
    assert response.status_code == 409
    assert f"{int(have)} COIN available, {int(have) + 1} needed" in response.json()["amount"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "CSX", "amount": "1.00", "reason": "r"}, "type"),
        ({"type": "CSD", "amount": "-5", "reason": "r"}, "amount"),
        ({"type": "CSD", "amount": "1.234", "reason": "r"}, "amount"),
        ({"type": "CSD", "amount": "abc", "reason": "r"}, "amount"),
        ({"type": "CSD", "amount": True, "reason": "r"}, "amount"),
        ({"type": "CSD", "amount": "1e20", "reason": "r"}, "amount"),
        ({"type": "CSD", "amount": "1.00"}, "reason"),
        ({"type": "CSD", "amount": "1.00", "reason": "a\nb"}, "reason"),
        ({"type": "CSD", "amount": "1.00", "reason": "r", "memo": "x"}, "memo"),
    ],
)
def test_a_bad_cash_movement_is_a_400_naming_the_field(market: Market, body: dict[str, Any], field: str) -> None:
    entries = LedgerEntry.objects.count()
    response = operations().post("/api/customers/000002/cash-movements", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert LedgerEntry.objects.count() == entries


PAIR = {"fromCustomerId": "000002", "toCustomerId": "000003"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "JNLC", "fromCustomerId": "000002", "toCustomerId": "000002", "amount": "1.00"}, "toCustomerId"),
        ({"type": "JNLC", "fromCustomerId": "000002", "toCustomerId": "999999", "amount": "1.00"}, "toCustomerId"),
        ({"type": "JNLS", **PAIR, "symbol": "NOPE", "quantity": 1}, "symbol"),
        ({"type": "JNLS", **PAIR, "symbol": "COIN", "quantity": 1.5}, "quantity"),
        ({"type": "JNLS", **PAIR, "symbol": "COIN", "amount": "1"}, "amount"),
    ],
)
def test_a_bad_journal_is_a_400_naming_the_field(market: Market, body: dict[str, Any], field: str) -> None:
    response = operations().post("/api/journals", {**body, "reason": "test"}, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_only_staff_with_the_permission_move_money(market: Market) -> None:
    trader = APIClient()
    trader.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user('t1', roles.TRADER)).key}")
    body = {"type": "CSD", "amount": "1.00", "reason": "r"}
    for client in (trader, client_for("000002")):
        response = client.post("/api/customers/000002/cash-movements", body, format="json")
        assert response.status_code == 403
        assert roles.POST_CASH_MOVEMENTS in response.json()["detail"]
        journal = {
            "type": "JNLC",
            "fromCustomerId": "000002",
            "toCustomerId": "000003",
            "amount": "1.00",
            "reason": "r",
        }
        assert client.post("/api/journals", journal, format="json").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_withdrawals_cannot_both_spend_the_same_cash(market: Market) -> None:
    customer = pk("000002")
    free = available(customer_id=customer, asset=CASH_ASSET)
    amount = (free * Decimal("0.6")).quantize(Decimal("0.01"))
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def withdraw(number: int) -> None:
        start.wait()
        try:
            movement_post(
                Movement(
                    purpose="CashWithdrawal",
                    customer_id=customer,
                    asset=CASH_ASSET,
                    amount=amount,
                    reason=f"race {number}",
                    actor="ops",
                )
            )
            outcomes.append("posted")
        except Exception as error:
            outcomes.append(type(error).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=withdraw, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["Conflict", "posted"]
    assert available(customer_id=customer, asset=CASH_ASSET) == free - amount


# --- Activities -----------------------------------------------------------------------------------


def _busy_account(market: Market) -> None:
    """Fills, a correction, a bust, a deposit, a withdrawal and journals for 000002."""
    for price in ("260.00", "260.00", "260.00"):
        drive(place(direction="Buy", type="Limit", quantity=100, price=price, timeInForce="IOC"))
    trades = list(Trade.objects.filter(customer__customer_id="000002").order_by("pk"))
    services.trades_settle(trade_ids=[trade.pk for trade in trades[:2]])  # the rest stay unsettled
    services.trade_correct(trade_id=trades[0].pk, price=Decimal("255.00"), reason="price fix", actor="ops")
    services.trade_correct(trade_id=trades[-1].pk, bust=True, reason="erroneous", actor="ops")
    for movement in (
        Movement("CashDeposit", pk("000002"), CASH_ASSET, Decimal("1000.00"), "wire", "ops"),
        Movement("CashWithdrawal", pk("000002"), CASH_ASSET, Decimal("300.00"), "payout", "ops"),
        Movement("Journal", pk("000002"), CASH_ASSET, Decimal("50.00"), "gift", "ops", pk("000003")),
        Movement("Journal", pk("000003"), "COIN", Decimal(7), "shares back", "ops", pk("000002")),
    ):
        movement_post(movement)


def test_activities_add_up_to_the_cash_and_shares(market: Market) -> None:
    _busy_account(market)
    customer = Customer.objects.get(customer_id="000002")

    rows = all_activities(staff_client(), "000002")

    # then every kind of movement is there, ascending, each once
    assert {row["type"] for row in rows} >= {
        "FILL", "FEE", "CORRECTION", "BUST", "SETTLEMENT", "CSD", "CSW", "TRANSFER_IN", "JNLC", "JNLS"
    }  # fmt: skip
    ids = [row["activityId"] for row in rows]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # and the amounts add up: all of them to settled plus unsettled cash, the settled ones to the ledger
    summary = selectors.customer_summary(customer=customer)
    assert sum(Decimal(row["netAmount"]) for row in rows) == summary.settled_cash + summary.unsettled_cash
    settled = sum(Decimal(row["netAmount"]) for row in rows if row["settled"])
    assert settled == cash_balance(customer_id=customer.pk)
    # and the settled shares per symbol to the ledger's holdings
    shares: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row["quantity"] is not None and row["settled"]:
            shares[row["symbol"]] += Decimal(row["quantity"])
    assert dict(shares) == {symbol: held.quantity for symbol, held in holdings(customer_id=customer.pk).items()}
    # and the bust names the version it undid, the correction the one it replaced
    correction = next(row for row in rows if row["type"] == "CORRECTION")
    assert (correction["replacesVersion"], correction["version"], correction["price"]) == (1, 2, "255.00")
    bust = next(row for row in rows if row["type"] == "BUST")
    assert bust["replacesVersion"] == 1
    assert next(row for row in rows if row["type"] == "JNLC")["counterpartyId"] == "000003"


def test_activities_page_by_cursor_and_filter_by_type(market: Market) -> None:
    _busy_account(market)
    everything = all_activities(client_for("000002"), "000002")

    # when read two at a time, then the pages join up to the same list
    paged = all_activities(client_for("000002"), "000002", pageSize=2)
    assert paged == everything
    # and since_id / until_id bound it
    middle = everything[3]["activityId"]
    after = all_activities(client_for("000002"), "000002", since_id=middle)
    assert after == everything[4:]
    upto = all_activities(client_for("000002"), "000002", until_id=middle)
    assert upto == everything[:4]
    # and a type filter keeps only those types
    fills = all_activities(client_for("000002"), "000002", type="FILL,FEE")
    assert fills == [row for row in everything if row["type"] in ("FILL", "FEE")]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "FILLS"}, "type"),
        ({"since_id": "42"}, "since_id"),
        ({"until_id": "20261399000000000000-01-000000000001"}, "until_id"),
        ({"date": "2026-13-01"}, "date"),
        ({"date": "9999-12-31"}, "date"),
        ({"until_id": "99991231235959999999-01-000000000001"}, "until_id"),
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "501"}, "pageSize"),
        ({"pageSize": "\u00b2"}, "pageSize"),
    ],
)
def test_a_bad_activities_query_is_a_400_naming_it(market: Market, params: dict[str, str], field: str) -> None:
    response = client_for("000002").get("/api/customers/000002/activities", params)
    assert response.status_code == 400
    assert field in response.json()


def test_a_trader_may_read_the_accounts_screen_but_not_post_on_it(market: Market) -> None:
    from django.test import Client

    browser = Client()
    browser.force_login(staff_user("t2", roles.TRADER))
    assert browser.get("/accounts/?customer=000002").status_code == 200
    assert browser.get("/accounts/?customer=000002&date=9999-12-31").status_code == 200  # shows today
    entries = LedgerEntry.objects.count()
    posted = browser.post("/accounts/", {"customer": "000002", "type": "CSD", "amount": "5.00", "reason": "r"})
    assert posted.status_code == 403
    assert LedgerEntry.objects.count() == entries


def test_a_client_reads_only_its_own_activities(market: Market) -> None:
    assert client_for("000003").get("/api/customers/000002/activities").status_code == 403
    assert staff_client().get("/api/customers/999999/activities").status_code == 404
