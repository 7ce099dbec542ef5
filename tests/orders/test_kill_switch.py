"""The kill switch: halts at four levels, their audit trail, the staff API and the admin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.test import Client

from broker.exceptions import ApplicationError
from broker.models import Customer, Ticker
from orders import kill_switch
from orders.models import Halt, HaltEvent, HaltScope
from pools.models import Pool
from tests.conftest import Market, client_for, make_ticker, staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops() -> AbstractUser:
    user = get_user_model().objects.create_user(username="ops", is_staff=True)
    assert isinstance(user, AbstractUser)
    return user


def ids(market: Market, *, customer: str = "000002", ticker: str = "COIN", pool: str | None = "EDGA") -> dict[str, Any]:
    """Keyword arguments of `halt_reason` for an order of `customer` in `ticker` at `pool`."""
    return {
        "customer_id": market["customers"][customer].pk,
        "ticker_id": Ticker.objects.get(symbol=ticker).pk,
        "pool_id": market["pools"][pool].pk if pool else None,
    }


def halt(scope: str, target_id: int | None, *, active: bool = True, reason: str = "desk says so", actor: Any = "ops"):
    return kill_switch.halt_set(scope=scope, target_id=target_id, active=active, reason=reason, actor=actor)


# --- 1. four levels: in scope there is a reason, out of scope there is none ---------------------------


def test_halt_of_everything_covers_every_order(market: Market) -> None:
    # given
    make_ticker("AAPL", "170.73")
    # when
    halt(HaltScope.ALL, None, reason="exchange outage")
    # then
    assert kill_switch.halt_reason(**ids(market)) == "all trading halted: exchange outage"
    assert kill_switch.halt_reason(**ids(market, customer="000003", ticker="AAPL", pool=None)) == (
        "all trading halted: exchange outage"
    )


def test_pool_halt_covers_that_pool_only(market: Market) -> None:
    # given
    edga = market["pools"]["EDGA"]
    # when
    halt(HaltScope.POOL, edga.pk, reason="venue unstable")
    # then
    assert kill_switch.halt_reason(**ids(market, pool="EDGA")) == "trading halted on pool EDGA: venue unstable"
    assert kill_switch.halt_reason(**ids(market, pool="EDGX")) is None
    assert kill_switch.halt_reason(**ids(market, pool=None)) is None, "placement asks without a pool"
    assert kill_switch.halted_pool_ids() == {edga.pk}


def test_ticker_halt_covers_that_ticker_only(market: Market) -> None:
    # given
    make_ticker("AAPL", "170.73")
    # when
    halt(HaltScope.TICKER, market["ticker"].pk, reason="news pending")
    # then
    assert kill_switch.halt_reason(**ids(market, ticker="COIN")) == "trading halted for ticker COIN: news pending"
    assert kill_switch.halt_reason(**ids(market, ticker="COIN", pool=None)) is not None
    assert kill_switch.halt_reason(**ids(market, ticker="AAPL")) is None
    assert kill_switch.halted_pool_ids() == set()


def test_customer_halt_covers_that_customer_only(market: Market) -> None:
    # when
    halt(HaltScope.CUSTOMER, market["customers"]["000002"].pk, reason="margin call")
    # then
    assert kill_switch.halt_reason(**ids(market, customer="000002")) == (
        "trading halted for customer 000002: margin call"
    )
    assert kill_switch.halt_reason(**ids(market, customer="000003")) is None


def test_nothing_halted_gives_no_reason(market: Market) -> None:
    assert kill_switch.halt_reason(**ids(market)) is None
    assert kill_switch.halted_pool_ids() == set()


def test_the_broadest_active_halt_is_the_reason(market: Market) -> None:
    # given
    halt(HaltScope.CUSTOMER, market["customers"]["000002"].pk, reason="margin call")
    halt(HaltScope.TICKER, market["ticker"].pk, reason="news pending")
    # when
    halt(HaltScope.ALL, None, reason="exchange outage")
    # then
    assert kill_switch.halt_reason(**ids(market)) == "all trading halted: exchange outage"


def test_a_long_reason_fits_an_order_reject_reason(market: Market) -> None:
    # given
    halt(HaltScope.TICKER, market["ticker"].pk, reason="x" * 500)
    # when
    reason = kill_switch.halt_reason(**ids(market))
    # then
    assert reason is not None
    assert len(reason) == kill_switch.REASON_MAX_LENGTH
    assert reason.startswith("trading halted for ticker COIN: xxx")


def test_halt_reason_takes_one_constant_query_without_halts_and_two_with_any(
    market: Market, django_assert_num_queries: Any
) -> None:
    # given no active halt: one statement answers (every batch of matches asks, under its book lock)
    order = ids(market)
    with django_assert_num_queries(1):
        assert kill_switch.halt_reason(**order) is None
    # given: a halt at every level, only some of them covering the order
    make_ticker("AAPL", "170.73")
    halt(HaltScope.POOL, market["pools"]["EDGX"].pk)
    halt(HaltScope.TICKER, Ticker.objects.get(symbol="AAPL").pk)
    halt(HaltScope.CUSTOMER, market["customers"]["000002"].pk, reason="margin call")
    halt(HaltScope.ALL, None, active=False, reason="")
    covered, free = ids(market), ids(market, customer="000003")
    # when / then: whether any is active, then all of them with what their reasons name, in one read
    with django_assert_num_queries(2):
        reason = kill_switch.halt_reason(**covered)
    assert reason == "trading halted for customer 000002: margin call"
    with django_assert_num_queries(2):
        assert kill_switch.halt_reason(**free) is None


# --- 2. toggling and its audit trail -------------------------------------------------------------------


def test_release_lifts_the_halt_and_every_toggle_is_recorded(market: Market, ops: AbstractUser) -> None:
    # given
    ticker_id = market["ticker"].pk
    halt(HaltScope.TICKER, ticker_id, reason="news pending", actor=ops)
    # when
    released = halt(HaltScope.TICKER, ticker_id, active=False, reason="news out", actor="desk")
    # then
    assert kill_switch.halt_reason(**ids(market)) is None
    assert (released.active, released.reason, released.changed_by) == (False, "news out", "desk")
    assert Halt.objects.count() == 1
    events = list(HaltEvent.objects.filter(halt=released).values_list("active", "reason", "actor"))
    assert events == [(True, "news pending", "ops"), (False, "news out", "desk")]


def test_halt_again_is_recorded_but_changes_nothing(market: Market) -> None:
    # given
    first = halt(HaltScope.POOL, market["pools"]["IEX"].pk, reason="venue unstable", actor="ops")
    # when
    again = halt(HaltScope.POOL, market["pools"]["IEX"].pk, reason="still unstable", actor="desk")
    # then
    assert again.pk == first.pk
    assert (again.active, again.reason, again.changed_by, again.changed_at) == (
        True,
        "venue unstable",
        "ops",
        first.changed_at,
    )
    assert list(HaltEvent.objects.values_list("active", "reason", "actor")) == [
        (True, "venue unstable", "ops"),
        (True, "still unstable", "desk"),
    ]


def test_release_needs_no_reason_and_an_anonymous_actor_is_the_system(market: Market) -> None:
    # when
    released = halt(HaltScope.ALL, None, active=False, reason="", actor=None)
    # then
    assert (released.active, released.changed_by) == (False, "system")
    assert HaltEvent.objects.get().actor == "system"


@pytest.mark.parametrize(
    ("scope", "target", "field"),
    [
        pytest.param("Venue", None, "scope", id="unknown-scope"),
        pytest.param(HaltScope.TICKER, None, "target", id="ticker-without-target"),
        pytest.param(HaltScope.POOL, 999_999, "target", id="unknown-pool"),
        pytest.param(HaltScope.TICKER, 999_999, "target", id="unknown-ticker"),
        pytest.param(HaltScope.CUSTOMER, 999_999, "target", id="unknown-customer"),
        pytest.param(HaltScope.ALL, 1, "target", id="all-with-target"),
    ],
)
def test_halt_set_refuses_a_bad_target(market: Market, scope: str, target: int | None, field: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        halt(scope, target)
    assert list(refused.value.errors) == [field]
    assert not HaltEvent.objects.exists()


@pytest.mark.parametrize("reason", ["", "   "])
def test_halting_needs_a_reason(market: Market, reason: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        halt(HaltScope.TICKER, market["ticker"].pk, reason=reason)
    assert list(refused.value.errors) == ["reason"]
    assert not Halt.objects.exists()


# --- 3. the database keeps halts consistent --------------------------------------------------------------


def test_the_database_refuses_a_target_that_does_not_match_the_scope(market: Market) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Halt.objects.create(scope=HaltScope.TICKER, pool=market["pools"]["EDGA"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Halt.objects.create(scope=HaltScope.ALL, customer=market["customers"]["000002"])


def test_the_database_keeps_one_halt_per_target_even_for_everything(market: Market) -> None:
    # given
    Halt.objects.create(scope=HaltScope.ALL)
    Halt.objects.create(scope=HaltScope.TICKER, ticker=market["ticker"])
    # when / then
    with pytest.raises(IntegrityError), transaction.atomic():
        Halt.objects.create(scope=HaltScope.ALL)
    with pytest.raises(IntegrityError), transaction.atomic():
        Halt.objects.create(scope=HaltScope.TICKER, ticker=market["ticker"])


# --- 4. the staff API ----------------------------------------------------------------------------------


def post_halt(client: Any, body: Any) -> Any:
    return client.post("/api/halts", data=json.dumps(body), content_type="application/json")


def test_clients_may_not_see_or_toggle_halts(market: Market) -> None:
    # given
    client = client_for("000002")
    # when
    listed = client.get("/api/halts")
    posted = post_halt(client, {"scope": "All", "target": None, "active": True, "reason": "mine"})
    # then
    assert listed.status_code == 403
    assert posted.status_code == 403
    assert not Halt.objects.exists()


def test_halts_need_a_token(market: Market) -> None:
    assert Client().get("/api/halts").status_code == 401


def test_staff_halt_and_release_a_ticker(market: Market) -> None:
    # given
    desk = staff_client("desk")
    # when
    halted = post_halt(desk, {"scope": "Ticker", "target": "COIN", "active": True, "reason": "news pending"})
    # then
    assert halted.status_code == 200, halted.json()
    body = halted.json()
    assert {key: body[key] for key in ("scope", "target", "active", "reason", "changedBy")} == {
        "scope": "Ticker",
        "target": "COIN",
        "active": True,
        "reason": "news pending",
        "changedBy": "desk",
    }
    assert body["changedAt"].endswith("Z")
    assert kill_switch.halt_reason(**ids(market)) == "trading halted for ticker COIN: news pending"

    # when
    released = post_halt(desk, {"scope": "Ticker", "target": "COIN", "active": False})
    # then
    assert released.status_code == 200
    assert released.json()["active"] is False
    assert kill_switch.halt_reason(**ids(market)) is None
    assert list(HaltEvent.objects.values_list("active", "actor")) == [(True, "desk"), (False, "desk")]


def test_staff_list_halts_at_every_level(market: Market) -> None:
    # given
    desk = staff_client("desk")
    for body in [
        {"scope": "All", "target": None, "active": True, "reason": "outage"},
        {"scope": "Pool", "target": "EDGA", "active": True, "reason": "venue unstable"},
        {"scope": "Customer", "target": "000002", "active": True, "reason": "margin call"},
    ]:
        assert post_halt(desk, body).status_code == 200
    # when
    listed = desk.get("/api/halts")
    # then
    assert listed.status_code == 200
    assert [(halt["scope"], halt["target"]) for halt in listed.json()["results"]] == [
        ("All", None),
        ("Customer", "000002"),
        ("Pool", "EDGA"),
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"scope": "Venue"}, "scope", id="unknown-scope"),
        pytest.param({"scope": None}, "scope", id="scope-null"),
        pytest.param({"target": None}, "target", id="ticker-without-target"),
        pytest.param({"target": ""}, "target", id="ticker-blank-target"),
        pytest.param({"scope": "Pool", "target": "NYSE"}, "target", id="unknown-pool"),
        pytest.param({"target": "NOPE"}, "target", id="unknown-ticker"),
        pytest.param({"scope": "Customer", "target": "999999"}, "target", id="unknown-customer"),
        pytest.param({"scope": "Customer", "target": 2}, "target", id="target-number"),
        pytest.param({"scope": "All", "target": "COIN"}, "target", id="all-with-target"),
        pytest.param({"reason": ""}, "reason", id="halt-without-reason"),
        pytest.param({"reason": None}, "reason", id="halt-reason-null"),
        pytest.param({"active": "true"}, "active", id="active-string"),
        pytest.param({"active": None}, "active", id="active-null"),
        pytest.param({"color": "red"}, "color", id="unknown-field"),
    ],
)
def test_bad_halt_requests_are_400_naming_the_field(market: Market, changes: dict[str, Any], field: str) -> None:
    # given
    body = {"scope": "Ticker", "target": "COIN", "active": True, "reason": "news pending", **changes}
    # when
    response = post_halt(staff_client(), body)
    # then
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not HaltEvent.objects.exists()


def test_a_halt_request_must_be_an_object(market: Market) -> None:
    response = post_halt(staff_client(), ["All"])
    assert response.status_code == 400
    assert "body" in response.json()


# --- 5. the admin goes through the service --------------------------------------------------------------


@pytest.fixture
def admin_client_for_ops(db: None) -> Client:
    user = get_user_model().objects.create_superuser(username="ops-admin", email="ops@example.com", password="x")
    client = Client()
    client.force_login(user)
    return client


def admin_form(**fields: Any) -> dict[str, Any]:
    return {
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
        "events-MIN_NUM_FORMS": "0",
        "events-MAX_NUM_FORMS": "1000",
        **fields,
    }


def test_admin_halt_and_release_are_recorded_with_the_user(market: Market, admin_client_for_ops: Client) -> None:
    # given
    ticker = market["ticker"]
    # when
    added = admin_client_for_ops.post(
        "/admin/orders/halt/add/",
        admin_form(scope="Ticker", ticker=str(ticker.pk), active="on", reason="news pending"),
    )
    # then
    assert added.status_code == 302
    halt_row = Halt.objects.get()
    assert (halt_row.active, halt_row.changed_by) == (True, "ops-admin")

    # when
    changed = admin_client_for_ops.post(f"/admin/orders/halt/{halt_row.pk}/change/", admin_form(reason="news out"))
    # then
    assert changed.status_code == 302
    halt_row.refresh_from_db()
    assert (halt_row.active, halt_row.reason) == (False, "news out")
    assert list(HaltEvent.objects.values_list("active", "reason", "actor")) == [
        (True, "news pending", "ops-admin"),
        (False, "news out", "ops-admin"),
    ]
    assert admin_client_for_ops.get(f"/admin/orders/halt/{halt_row.pk}/change/").status_code == 200
    assert admin_client_for_ops.get("/admin/orders/halt/").status_code == 200
    assert admin_client_for_ops.get("/admin/orders/haltevent/").status_code == 200


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        pytest.param({"scope": "Ticker", "active": "on", "reason": "x"}, "ticker", id="ticker-missing"),
        pytest.param({"scope": "Ticker", "ticker": "COIN", "active": "on"}, "reason", id="reason-missing"),
        pytest.param({"scope": "All", "pool": "EDGA", "active": "on", "reason": "x"}, "pool", id="all-with-pool"),
    ],
)
def test_admin_shows_refusals_next_to_the_field(
    market: Market, admin_client_for_ops: Client, fields: dict[str, str], error_field: str
) -> None:
    # given: targets by primary key, as the admin form posts them
    targets = {"COIN": Ticker.objects.get(symbol="COIN").pk, "EDGA": Pool.objects.get(name="EDGA").pk}
    posted = {name: str(targets.get(value, value)) for name, value in fields.items()}
    # when
    response = admin_client_for_ops.post("/admin/orders/halt/add/", admin_form(**posted))
    # then
    assert response.status_code == 200
    assert error_field in response.context["adminform"].form.errors
    assert not Halt.objects.exists()
    assert not HaltEvent.objects.exists()


def test_admin_refuses_a_second_halt_of_one_target(market: Market, admin_client_for_ops: Client) -> None:
    # given
    halt(HaltScope.CUSTOMER, Customer.objects.get(customer_id="000002").pk, reason="margin call")
    # when
    response = admin_client_for_ops.post(
        "/admin/orders/halt/add/",
        admin_form(scope="Customer", customer=str(market["customers"]["000002"].pk), active="on", reason="again"),
    )
    # then
    assert response.status_code == 200
    assert "This target already has a halt" in str(response.context["adminform"].form.errors)
    assert HaltEvent.objects.count() == 1
