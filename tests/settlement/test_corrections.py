"""Trade corrections: amend and bust keep every version, post reversals, and the books follow."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from broker.exceptions import ApplicationError, Conflict
from orders import services
from orders.models import ChildOrder, Order, OrderStatus, Trade, TradeVersion
from pools.models import Execution
from settlement.models import Posting, PostingPurpose, Reservation
from settlement.selectors import cash_balance, holdings
from tests.conftest import Market, client_for, drive, place, staff_client
from tests.invariants import all_violations

pytestmark = pytest.mark.django_db


def filled_and_settled(customer_id: str = "000002", **fields: object) -> Order:
    order = place(customer_id, **fields)
    drive(order)
    services.trades_settle(trade_ids=list(Trade.objects.filter(order=order).values_list("pk", flat=True)))
    order.refresh_from_db()
    return order


def cost(trades: object) -> Decimal:
    return sum(((t.price * t.quantity).quantize(Decimal("0.01")) + t.fee for t in trades), Decimal(0))  # type: ignore[attr-defined]


def test_amending_the_price_keeps_the_old_version_and_rebooks_the_cash(market: Market) -> None:
    # given a settled buy
    customer = market["customers"]["000002"]
    order = filled_and_settled(quantity=300, price="260.00")
    trade = Trade.objects.filter(order=order).first()
    assert trade is not None
    old_price = trade.price

    # when ops amend its price
    services.trade_correct(trade_id=trade.pk, price=Decimal("250.00"), reason="venue price correction", actor="ops")

    # then the old version is kept with who and why, the trade is version 2, and the books follow
    trade.refresh_from_db()
    (previous,) = TradeVersion.objects.filter(trade=trade)
    assert (previous.version, previous.price, previous.reason, previous.changed_by) == (
        1,
        old_price,
        "venue price correction",
        "ops",
    )
    assert (trade.version, trade.price) == (2, Decimal("250.00"))
    assert Execution.objects.get(pk=trade.execution_id).price == Decimal("250.00")
    assert Posting.objects.filter(trade_ref=trade.pk, purpose=PostingPurpose.TRADE_REVERSAL).count() == 1
    assert cash_balance(customer_id=customer.pk) == customer.initial_funds - cost(Trade.objects.filter(order=order))
    order.refresh_from_db()
    assert order.filled_quantity == 300
    assert all_violations() == []


def test_busting_a_settled_trade_takes_it_out_of_the_books(market: Market) -> None:
    # given a filled, settled buy of 300 on top of the 5,000 opening position
    customer = market["customers"]["000002"]
    order = filled_and_settled(quantity=300, price="260.00")
    assert order.status == OrderStatus.FILLED
    trade = Trade.objects.filter(order=order).order_by("pk").first()
    assert trade is not None

    # when one of its trades is busted
    services.trade_correct(trade_id=trade.pk, bust=True, reason="clearly erroneous", actor="ops")

    # then the order is no longer filled (it ends Cancelled), holdings and cash exclude the trade
    order.refresh_from_db()
    remaining = Trade.objects.filter(order=order, busted=False)
    assert order.filled_quantity == sum(t.quantity for t in remaining) == 300 - trade.quantity
    assert order.status == OrderStatus.CANCELLED
    assert holdings(customer_id=customer.pk)["COIN"].quantity == 5000 + order.filled_quantity
    assert cash_balance(customer_id=customer.pk) == customer.initial_funds - cost(remaining)
    assert ChildOrder.objects.get(pk=trade.child_id).filled_quantity < trade.quantity + 1
    assert all_violations() == []
    # and the busted trade is gone from the client's list, but its history stays visible
    client = client_for("000002")
    listed = {row["tradeId"] for row in client.get(f"/api/trades?orderId={order.order_id}").json()["results"]}
    assert str(trade.trade_id) not in listed
    history = client.get(f"/api/trades/{trade.trade_id}/history").json()
    assert history["busted"] is True
    assert history["previousVersions"][0]["change"] == "Bust"


def test_lowering_the_quantity_of_an_unsettled_trade_adjusts_what_the_order_holds(market: Market) -> None:
    # given a filled buy whose trades are not settled yet
    order = place(quantity=300, price="260.00")
    drive(order)
    trade = Trade.objects.filter(order=order).order_by("-quantity").first()
    assert trade is not None
    assert trade.quantity > 1

    # when its quantity is lowered by one share
    services.trade_correct(trade_id=trade.pk, quantity=trade.quantity - 1, reason="venue fill was short", actor="ops")

    # then the pending cost is exactly the new trades' cost, and settling books the corrected version
    reservation = Reservation.objects.get(order_ref=order.pk)
    assert reservation.pending == cost(Trade.objects.filter(order=order, busted=False))
    services.trades_settle(trade_ids=list(Trade.objects.filter(order=order).values_list("pk", flat=True)))
    reservation.refresh_from_db()
    assert reservation.pending == 0
    assert all_violations() == []


def test_a_correction_between_two_customers_moves_both_sides(market: Market) -> None:
    # given two customers who traded with each other
    seller = filled_and_settled("000003", direction="Sell", quantity=300, price="256.62")
    buyer = filled_and_settled("000002", quantity=300, price="256.62")
    seller.refresh_from_db()
    (shared,) = Trade.objects.filter(order=buyer)
    assert Trade.objects.filter(execution_id=shared.execution_id).count() == 2

    # when the buyer's trade is amended
    services.trade_correct(trade_id=shared.pk, price=Decimal("256.50"), reason="agreed with the venue", actor="ops")

    # then both trades of that execution carry the new price, and the books hold
    assert set(Trade.objects.filter(execution_id=shared.execution_id).values_list("price", flat=True)) == {
        Decimal("256.50")
    }
    assert all_violations() == []


def test_corrections_are_refused_when_they_do_not_make_sense(market: Market) -> None:
    resting = place(quantity=100, price="200.00")
    drive(resting)
    done = filled_and_settled(quantity=200, price="260.00")
    trade = Trade.objects.filter(order=done).first()
    assert trade is not None

    with pytest.raises(ApplicationError, match="reason"):
        services.trade_correct(trade_id=trade.pk, price=Decimal("1"), reason=" ", actor="ops")
    with pytest.raises(ApplicationError, match="lower the quantity"):
        services.trade_correct(trade_id=trade.pk, quantity=trade.quantity + 1, reason="more", actor="ops")
    services.trade_correct(trade_id=trade.pk, bust=True, reason="bust", actor="ops")
    with pytest.raises(Conflict, match="busted"):
        services.trade_correct(trade_id=trade.pk, bust=True, reason="again", actor="ops")


def test_only_staff_may_correct_over_the_api(market: Market) -> None:
    order = filled_and_settled(quantity=100, price="260.00")
    trade = Trade.objects.filter(order=order).first()
    assert trade is not None
    path = f"/api/trades/{trade.trade_id}/amend"

    assert client_for("000002").post(path, {"price": "255.00", "reason": "x"}, format="json").status_code == 403
    bad = staff_client().post(path, {"price": "255.001", "reason": ""}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()) == {"price", "reason"}
    good = staff_client().post(path, {"price": "255.00", "reason": "venue correction"}, format="json")
    assert good.status_code == 200
    assert good.json()["version"] == 2
    assert good.json()["current"]["price"] == "255.00"
    assert client_for("000003").get(f"/api/trades/{trade.trade_id}/history").status_code == 404


def test_amending_an_unsettled_trade_asks_for_a_settlement_after_its_commit(
    market: Market, django_capture_on_commit_callbacks: Any
) -> None:
    # given an unsettled fill (a settlement running while the correction held its row skipped it:
    # it skips locked trades, so nothing else would settle this one until the scheduled sweep)
    from broker.cache import shared_cache
    from orders.services.effects import SETTLE_PENDING_KEY

    order = place("000002", quantity=100, price="260.00", timeInForce="IOC")
    drive(order)
    trade = Trade.objects.filter(order=order).first()
    assert trade is not None
    assert trade.settlement_date is None
    shared_cache().delete(SETTLE_PENDING_KEY)

    # when Operations amend it and the correction commits
    with django_capture_on_commit_callbacks(execute=True):
        services.trade_correct(trade_id=trade.pk, price=Decimal("259.00"), reason="price fix", actor="ops")

    # then a settlement was asked for (its mark is set until the task starts)
    assert shared_cache().get(SETTLE_PENDING_KEY) is not None
