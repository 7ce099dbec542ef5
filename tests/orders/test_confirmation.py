"""Trade confirmations: the JSON fields against the trade, the PDF's text read back, the correction
history, and who may read one."""

from __future__ import annotations

import io
from decimal import ROUND_HALF_UP, Decimal

import pytest
from pypdf import PdfReader

from orders import services
from orders.models import Trade
from tests.conftest import Market, client_for, drive, place, staff_client

pytestmark = pytest.mark.django_db


def a_trade() -> Trade:
    order = place(direction="Buy", type="Limit", quantity=100, price="260.00", timeInForce="IOC")
    drive(order)
    trade = Trade.objects.filter(order=order).order_by("pk").first()
    assert trade is not None, "the order did not trade"
    return trade


def test_the_confirmation_states_the_trade_its_money_and_its_order(market: Market) -> None:
    # given a buy fill of customer 000002
    trade = a_trade()

    # when its client asks for the confirmation
    response = client_for("000002").get(f"/api/trades/{trade.trade_id}/confirmation")

    # then the figures are the trade's, and the net amount is the cash it costs
    assert response.status_code == 200
    body = response.json()
    notional = (trade.quantity * trade.price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert body["customer"] == {"customerId": "000002", "name": trade.customer.name}
    assert body["trade"]["side"] == "Buy"
    assert body["trade"]["quantity"] == trade.quantity
    assert Decimal(body["trade"]["price"]) == trade.price
    assert body["trade"]["venue"] == trade.pool.name
    assert body["trade"]["liquidity"] == trade.liquidity
    assert Decimal(body["trade"]["notional"]) == notional
    assert Decimal(body["trade"]["fee"]) == trade.fee
    assert Decimal(body["trade"]["netAmount"]) == -(notional + trade.fee)
    assert body["trade"]["status"] == "Active"
    assert body["order"]["orderId"] == str(trade.order.order_id)
    assert body["order"]["limitPrice"] == "260.00"
    assert body["corrections"] == []


def test_the_pdf_holds_the_same_figures_and_the_correction_history(market: Market) -> None:
    # given a trade amended by Operations
    trade = a_trade()
    services.trade_correct(trade_id=trade.pk, price=Decimal("255.50"), reason="venue price correction", actor="ops")
    trade.refresh_from_db()

    # when the PDF is asked for
    response = client_for("000002").get(f"/api/trades/{trade.trade_id}/confirmation", HTTP_ACCEPT="application/pdf")

    # then it is a PDF whose text carries the figures of the JSON
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="confirmation-{trade.trade_id}.pdf"' in response["Content-Disposition"]
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    body = client_for("000002").get(f"/api/trades/{trade.trade_id}/confirmation").json()
    for figure in (
        str(trade.trade_id), body["trade"]["notional"], body["trade"]["fee"], body["trade"]["netAmount"],
        "255.50", body["order"]["orderId"], "venue price correction", "version 2",
    ):  # fmt: skip
        assert figure in text, figure
    assert body["corrections"][0]["reason"] == "venue price correction"
    assert body["corrections"][0]["version"] == 1


def test_another_customer_gets_nothing_and_errors_are_json_even_for_a_pdf(market: Market) -> None:
    trade = a_trade()
    response = client_for("000003").get(f"/api/trades/{trade.trade_id}/confirmation", HTTP_ACCEPT="application/pdf")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    # staff with the blotter read any customer's
    assert staff_client().get(f"/api/trades/{trade.trade_id}/confirmation?format=pdf").status_code == 200


def test_each_trade_on_the_trades_screen_links_its_confirmation(market: Market) -> None:
    from django.test import Client

    from orders import roles
    from tests.staff import PASSWORD, staff_user

    trade = a_trade()
    staff_user("trader", roles.TRADER)
    client = Client()
    assert client.login(username="trader", password=PASSWORD)

    html = client.get("/trades/").content.decode()
    link = f"/api/trades/{trade.trade_id}/confirmation?format=pdf"
    assert f'href="{link}"' in html
    # and the session that opened the screen may open the PDF
    response = client.get(link)
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
