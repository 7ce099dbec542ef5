"""Token authentication in one query: DRF's answers, and the caller's access facts read with the token."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission, User
from rest_framework import authentication as drf_authentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient

from broker import access
from broker import roles as role_groups
from broker import services as broker_services
from broker.api.authentication import TokenAuthentication
from orders import roles
from orders.models import Order
from tests.conftest import Market, client_for, staff_client
from tests.staff import staff_user

pytestmark = pytest.mark.django_db

BODY = {"customerId": "000002", "direction": "Buy", "ticker": "COIN", "type": "Limit", "quantity": 1, "price": "1"}


def post_order(client: APIClient) -> Any:
    return client.post("/api/orders", data=json.dumps(BODY), content_type="application/json")


def token_of(user: User) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def test_a_client_is_authenticated_and_scoped_in_one_query(market: Market, django_assert_num_queries: Any) -> None:
    # given a client token
    key = broker_services.api_token_for_customer(customer_id="000002").key

    # when it is checked and order entry asks what it may do
    with django_assert_num_queries(1):
        user, token = TokenAuthentication().authenticate_credentials(key)
        scope = access.customer_scope(user=user, permission=roles.ENTER_ORDER)
        same = access.customer_for_user(user=user, customer_id="000002", permission=roles.ENTER_ORDER)

    # then the token, its user and its customer came from that one query
    assert token.key == key
    assert token.user == user
    assert user.username == "client-000002"
    assert scope == same == market["customers"]["000002"]


def test_staff_permissions_come_with_the_token(market: Market, django_assert_num_queries: Any) -> None:
    # given a Trader with one permission of its own besides its role's
    user = staff_user("trader-p", roles.TRADER)
    user.user_permissions.add(Permission.objects.get(codename="operate_kill_switch"))
    key = token_of(user)

    # when the token is checked and permissions are asked
    with django_assert_num_queries(1):
        authenticated, _ = TokenAuthentication().authenticate_credentials(key)
        assert access.customer_scope(user=authenticated, permission=roles.ENTER_ORDER) is None
        assert authenticated.has_perm(roles.OPERATE_KILL_SWITCH)
        assert not authenticated.has_perm(roles.CORRECT_TRADE)

    # then they are exactly the ones Django's ModelBackend finds
    fresh = User.objects.get(pk=user.pk)
    backend = ModelBackend()
    assert authenticated.get_user_permissions() == backend.get_user_permissions(fresh)
    assert authenticated.get_group_permissions() == backend.get_group_permissions(fresh)
    assert authenticated.get_all_permissions() == backend.get_all_permissions(fresh)
    assert roles.ENTER_ORDER in authenticated.get_group_permissions()


def test_a_superuser_holds_every_permission(market: Market) -> None:
    user = User.objects.create_user(username="root-t", is_staff=True, is_superuser=True)

    authenticated, _ = TokenAuthentication().authenticate_credentials(token_of(user))

    assert authenticated.has_perm(roles.CORRECT_TRADE)
    assert authenticated.get_all_permissions() == ModelBackend().get_all_permissions(User.objects.get(pk=user.pk))


@pytest.mark.parametrize("key", ["0" * 40, "not-a-token", ""])
def test_an_unknown_token_is_refused_as_drf_refuses_it(market: Market, key: str) -> None:
    with pytest.raises(AuthenticationFailed) as ours:
        TokenAuthentication().authenticate_credentials(key)
    with pytest.raises(AuthenticationFailed) as drf:
        drf_authentication.TokenAuthentication().authenticate_credentials(key)
    assert ours.value.detail == drf.value.detail == "Invalid token."


def test_a_token_with_a_nul_character_is_invalid_not_a_500(market: Market) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc\x00def")

    response = post_order(client)

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_a_rotated_token_stops_working_at_once(market: Market) -> None:
    # given a client that placed an order
    old = client_for("000002")
    assert post_order(old).status_code == 201

    # when its token is rotated
    broker_services.api_token_for_customer(customer_id="000002", rotate=True)

    # then the old token is refused on the very next request, and nothing is recorded
    before = Order.objects.count()
    response = post_order(old)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}
    assert response["WWW-Authenticate"] == "Token"
    assert Order.objects.count() == before
    assert post_order(client_for("000002")).status_code == 201


def test_a_deactivated_user_stops_working_at_once(market: Market) -> None:
    # given a client that placed an order
    client = client_for("000002")
    assert post_order(client).status_code == 201

    # when its user is deactivated (an update that sends no signal)
    User.objects.filter(username="client-000002").update(is_active=False)

    # then its next request is refused as DRF refuses it
    response = post_order(client)
    assert response.status_code == 401
    assert response.json() == {"detail": "User inactive or deleted."}


def test_a_changed_role_counts_from_the_next_request(market: Market) -> None:
    # given a Trader entering an order
    user = staff_user("trader-r", roles.TRADER)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_of(user)}")
    assert post_order(client).status_code == 201

    # when the user becomes Operations (who may not enter orders)
    role_groups.role_assign(user=user, role=roles.OPERATIONS)

    # then the next order is refused naming the permission
    response = post_order(client)
    assert response.status_code == 403
    assert roles.ENTER_ORDER in response.json()["detail"]


def test_a_client_bound_to_no_customer_is_refused(market: Market) -> None:
    # given a client user whose customer was unbound from it
    client = client_for("000002")
    market["customers"]["000002"].refresh_from_db()
    customer = market["customers"]["000002"]
    customer.user = None
    customer.save(update_fields=["user"])

    # then it may not enter orders
    response = post_order(client)
    assert response.status_code == 403
    assert response.json() == {"detail": "This user is not bound to a customer."}


def test_staff_tokens_still_place_for_any_customer(market: Market) -> None:
    response = post_order(staff_client())
    assert response.status_code == 201
    assert response.json()["customerId"] == "000002"
