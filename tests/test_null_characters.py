"""A NUL character anywhere in a request is a 400 naming where, on screens and API alike, never a 500.

Postgres cannot compare or store text containing NUL, so these requests used to fail inside a lookup.
"""

from __future__ import annotations

import html

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from broker import services as broker_services
from broker.ws_auth import _user_for_token
from orders import roles
from tests.conftest import Market
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db


def trader() -> Client:
    staff_user("trader", roles.TRADER)
    client = Client()
    assert client.login(username="trader", password=PASSWORD)
    return client


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/positions/?customer=%00", "The query parameter 'customer'"),
        ("/orders/blotter/?ticker=CO%00IN", "The query parameter 'ticker'"),
        ("/orders/ticket/quote/?ticker=%00", "The query parameter 'ticker'"),
        ("/tickers/A%00/", "The address"),
    ],
)
def test_a_screen_answers_400_naming_where_the_nul_is(market: Market, path: str, where: str) -> None:
    response = trader().get(path)

    assert response.status_code == 400
    page = html.unescape(response.content.decode())
    assert where in page
    assert "Bad request" in page


def test_a_form_field_with_a_nul_is_a_400(market: Market) -> None:
    response = trader().post("/orders/ticket/", {"customer": "000002", "ticker": "CO\x00IN", "quantity": "1"})

    assert response.status_code == 400
    assert "The field 'ticker'" in html.unescape(response.content.decode())


@pytest.mark.parametrize(
    "path", ["/api/tickers/A%00", "/api/tickers/A%00/history", "/api/customers/%00", "/api/orders?ticker=%00"]
)
def test_an_api_request_with_a_nul_is_a_json_400(market: Market, path: str) -> None:
    token = broker_services.api_token_for_customer(customer_id="000002").key
    response = Client().get(path, headers={"Authorization": f"Token {token}"})

    assert response.status_code == 400
    assert "NUL character" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)  # the lookup runs in another thread, on its own connection
def test_a_websocket_token_that_cannot_be_a_key_is_no_user(market: Market) -> None:
    token = broker_services.api_token_for_customer(customer_id="000002").key

    assert async_to_sync(_user_for_token)(token).pk is not None
    assert isinstance(async_to_sync(_user_for_token)("\x00"), AnonymousUser)
    assert isinstance(async_to_sync(_user_for_token)(token.upper()), AnonymousUser)
