"""A real task failing for good on the real worker lands in the dead letters, and retrying it once its
cause is gone completes it: HTTP -> worker -> settlement refused (a trigger stands in for a broken
ledger) -> DeadLetter; trigger dropped -> Retry -> the same task on the worker -> Resolved."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.db import connection

from broker import deadletters
from broker import services as broker_services
from broker.models import DeadLetter, DeadLetterStatus
from orders.models import Trade
from pools import services as pool_services
from tests.conftest import give_shares, make_customers, make_pools, make_ticker
from tests.integration.conftest import Stack
from tests.stack import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


@pytest.fixture
def settlement_refused() -> Iterator[None]:
    """Every trade settlement posting refused, as a broken ledger would, until the test drops it."""
    with connection.cursor() as cursor:
        cursor.execute(
            """CREATE OR REPLACE FUNCTION test_refuse_settlement() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'ledger refused the settlement (test)'; END $$;
               CREATE TRIGGER test_refuse_settlement BEFORE INSERT ON settlement_posting FOR EACH ROW
               WHEN (NEW.purpose = 'TradeSettlement') EXECUTE FUNCTION test_refuse_settlement()"""
        )
    try:
        yield
    finally:
        _cause_removed()


def _cause_removed() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER IF EXISTS test_refuse_settlement ON settlement_posting; "
            "DROP FUNCTION IF EXISTS test_refuse_settlement()"
        )


def test_a_settlement_failing_for_good_is_a_dead_letter_and_a_retry_completes_it(
    stack: Stack, settlement_refused: None
) -> None:
    # given a market, and an order that fills (its settlement, T+0, is then refused)
    make_pools()
    make_customers()
    ticker = make_ticker("COIN", "256.62")
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN")
    token = broker_services.api_token_for_customer(customer_id="000002").key
    order = {
        "customerId": "000002", "direction": "Buy", "ticker": "COIN", "type": "Limit",
        "quantity": 100, "price": "260.00", "timeInForce": "Day",
    }  # fmt: skip
    response = httpx.post(f"{stack.base_url}/api/orders", json=order, headers={"Authorization": f"Token {token}"})
    assert response.status_code == 201, response.text

    # when the settlement task fails (a database error: not retried), then it is recorded once
    letter = wait_for(lambda: DeadLetter.objects.filter(task_name="orders.settle_pending").first(), "the dead letter")
    assert letter.status == DeadLetterStatus.OPEN
    assert "ledger refused the settlement (test)" in letter.error
    assert letter.queue == "settlement"
    trades = list(Trade.objects.filter(customer__customer_id="000002"))
    assert trades
    assert all(trade.settlement_date is None for trade in trades)

    # when the cause is removed and Operations retry it
    _cause_removed()
    deadletters.dead_letter_retry(letter_id=letter.pk, actor="ops")

    # then the same task runs again on the worker, settles the trades, and the letter is resolved
    wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, status=DeadLetterStatus.RESOLVED).exists(), "the resolution"
    )
    assert all(trade.settlement_date is not None for trade in Trade.objects.filter(pk__in=[t.pk for t in trades]))
    history = list(letter.actions.values_list("action", flat=True))
    assert history[0] == "Recorded"
    assert history[-2:] == ["Retried", "Completed after the retry"]
    assert DeadLetter.objects.filter(status__in=["Open", "Retrying"]).count() == 0
