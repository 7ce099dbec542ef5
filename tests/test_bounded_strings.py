"""Every string of every write path is bounded and one line (or plain text) before it reaches the database.

A table of endpoint x field drives the tests: each row says how to send one value in one field of one
write path (REST API, staff screen, admin form, CSV row) and what the answer must name. Every row gets
an over-long value, a NUL, a trailing newline, a lone surrogate (API only: a form cannot carry one) and a
character outside the Basic Multilingual Plane. The answer is a refusal naming the field (a 4xx from
the API; the form again with the message next to the field from a screen, which htmx swaps in) and
nothing is written; never a 5xx. A free-text field may instead accept a non-BMP character and store it
intact; identifiers (customerId, ticker, clientOrderId, symbols) refuse it.

Adding a write path means adding rows to `FIELDS`.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from broker.models import Customer, MarketDataJob, Ticker
from orders import roles
from orders.models import BulkBatch, Halt, HaltEvent, Order, Trade, TradeVersion
from reporting.models import Break, BreakComment, BreakKind, ReconciliationRun
from tests.conftest import Market, drive, place
from tests.staff import PASSWORD, staff_user

pytestmark = pytest.mark.django_db

IDENTIFIER, LINE, TEXT = "identifier", "line", "text"  # what kind of string a field holds


class World:
    """What the rows need, made on first use: signed-in clients, a finished trade, an open break."""

    def __init__(self, market: Market):
        self.market = market

    @cached_property
    def staff(self) -> User:
        return staff_user("boss", roles.ADMIN)

    @cached_property
    def api(self) -> APIClient:
        client = APIClient()
        client.force_login(self.staff)
        return client

    @cached_property
    def screens(self) -> Client:
        client = Client()
        assert client.login(username=self.staff.username, password=PASSWORD)
        return client

    @cached_property
    def admin(self) -> Client:
        User.objects.create_superuser("root", password=PASSWORD)
        client = Client()
        assert client.login(username="root", password=PASSWORD)
        return client

    @cached_property
    def trade(self) -> Trade:
        order = place("000002", quantity=100, price="260.00")
        drive(order)
        trade = Trade.objects.filter(order=order).order_by("pk").first()
        assert trade is not None
        assert order.is_final
        return trade

    @cached_property
    def open_break(self) -> Break:
        run = ReconciliationRun.objects.create(triggered_by="test")
        return Break.objects.create(run=run, kind=BreakKind.values[0], records={}, expected="1", actual="2")

    def prepare(self) -> None:
        """Make everything a row may act on now, so that counting before and after compares like with like."""
        for name in ("staff", "api", "screens", "admin", "trade", "open_break"):
            getattr(self, name)

    def written(self) -> dict[str, Any]:
        """What a refused request must leave as it was."""
        return {
            "orders": Order.objects.count(),
            "halts": list(Halt.objects.values_list("active", "reason").order_by("pk")),
            "halt events": HaltEvent.objects.count(),
            "trade versions": TradeVersion.objects.count(),
            "trades": list(Trade.objects.values_list("pk", "version", "quantity", "price", "busted").order_by("pk")),
            "break comments": BreakComment.objects.count(),
            "breaks": list(Break.objects.values_list("status", "resolution").order_by("pk")),
            "jobs": MarketDataJob.objects.count(),
            "tickers": Ticker.objects.count(),
            "customers": list(Customer.objects.values_list("name", flat=True).order_by("pk")),
            "cancelled": list(Order.objects.values_list("status").order_by("pk")),
        }


# --- how a value is sent ------------------------------------------------------------------------------


def api_json(path: str | Callable[[World], str], body: Callable[[World, str], dict[str, Any]]) -> Any:
    def send(world: World, value: str) -> Any:
        url = path(world) if callable(path) else path
        # json.dumps escapes what UTF-8 cannot carry (a lone surrogate becomes "\ud800"), as a client would
        return world.api.post(url, json.dumps(body(world, value)), content_type="application/json")

    return send


def screen_post(path: str | Callable[[World], str], data: Callable[[World, str], dict[str, Any]]) -> Any:
    def send(world: World, value: str) -> Any:
        url = path(world) if callable(path) else path
        return world.screens.post(url, data(world, value))

    return send


def admin_post(path: str | Callable[[World], str], data: Callable[[World, str], dict[str, Any]]) -> Any:
    def send(world: World, value: str) -> Any:
        url = path(world) if callable(path) else path
        return world.admin.post(url, data(world, value))

    return send


def csv_upload(column: str) -> Any:
    def send(world: World, value: str) -> Any:
        row = {
            "customerId": "000002",
            "direction": "Buy",
            "ticker": "COIN",
            "type": "Limit",
            "quantity": "10",
            "price": "250.00",
            "timeInForce": "Day",
            "clientOrderId": "row-1",
        }
        row[column] = value
        quoted = ['"' + text.replace('"', '""') + '"' for text in row.values()]
        content = (",".join(row) + "\r\n" + ",".join(quoted) + "\r\n").encode("utf-8", "surrogatepass")
        upload = io.BytesIO(content)
        upload.name = "orders.csv"
        return world.screens.post("/orders/bulk/", {"file": upload})

    return send


ORDER = {"customerId": "000002", "direction": "Buy", "ticker": "COIN", "type": "Limit", "quantity": 10}


def order_body(field: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda world, value: {**ORDER, "price": "250.00", field: value}


TICKET = {
    "customer": "000002",
    "direction": "Buy",
    "ticker": "COIN",
    "order_type": "Limit",
    "quantity": "10",
    "price": "250.00",
    "time_in_force": "Day",
}


def ticket(field: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda world, value: {**TICKET, field: value}


def trade_path(action: str) -> Callable[[World], str]:
    return lambda world: f"/api/trades/{world.trade.trade_id}/{action}"


def trade_screen(world: World) -> str:
    return f"/operations/trades/{world.trade.trade_id}/correct/"


def break_screen(world: World) -> str:
    return f"/operations/breaks/{world.open_break.pk}/"


def break_admin(world: World) -> str:
    return f"/admin/reporting/break/{world.open_break.pk}/change/"


def break_admin_form(field: str) -> Callable[[World, str], dict[str, Any]]:
    def data(world: World, value: str) -> dict[str, Any]:
        management = {"comments-TOTAL_FORMS": "0", "comments-INITIAL_FORMS": "0"}
        return {"assignee": "", "comment": "", "resolution": "", **management, field: value}

    return data


def customer_admin(world: World) -> str:
    return f"/admin/broker/customer/{world.market['customers']['000002'].pk}/change/"


def customer_admin_form(world: World, value: str) -> dict[str, Any]:
    customer = world.market["customers"]["000002"]
    return {
        "customer_id": customer.customer_id,
        "name": value,
        "email": customer.email or "jane@example.com",
        "initial_funds": str(customer.initial_funds),
        "user": str(customer.user_id or ""),
    }


@dataclass(frozen=True)
class Field:
    endpoint: str
    name: str  # the field as the answer names it
    send: Callable[[World, str], Any]
    kind: str
    max_length: int
    sample: str  # a valid value; the bad values are built from it
    stored: Callable[[World], str] | None = None  # where an accepted free-text value ends up

    def __str__(self) -> str:
        return f"{self.endpoint}:{self.name}"


def last_halt_reason(world: World) -> str:
    return HaltEvent.objects.order_by("-pk").values_list("reason", flat=True)[0]


def last_version_reason(world: World) -> str:
    return TradeVersion.objects.order_by("-pk").values_list("reason", flat=True)[0]


def last_comment(world: World) -> str:
    return BreakComment.objects.order_by("-pk").values_list("text", flat=True)[0]


def resolution(world: World) -> str:
    return Break.objects.get(pk=world.open_break.pk).resolution


FIELDS = [
    # REST API
    *[
        Field("POST /api/orders", name, api_json("/api/orders", order_body(name)), kind, length, sample)
        for name, kind, length, sample in [
            ("customerId", IDENTIFIER, 6, "000002"),
            ("ticker", IDENTIFIER, 12, "COIN"),
            ("clientOrderId", IDENTIFIER, 64, "abc-1"),
            ("direction", IDENTIFIER, 4, "Buy"),
            ("type", IDENTIFIER, 6, "Limit"),
            ("timeInForce", IDENTIFIER, 3, "Day"),
            ("price", IDENTIFIER, 20, "250.00"),
        ]
    ],
    Field(
        "POST /api/trades/{id}/amend",
        "reason",
        api_json(trade_path("amend"), lambda world, value: {"price": "255.00", "reason": value}),
        LINE,
        200,
        "agreed",
        last_version_reason,
    ),
    Field(
        "POST /api/trades/{id}/amend",
        "price",
        api_json(trade_path("amend"), lambda world, value: {"price": value, "reason": "agreed"}),
        IDENTIFIER,
        20,
        "255.00",
    ),
    Field(
        "POST /api/trades/{id}/bust",
        "reason",
        api_json(trade_path("bust"), lambda world, value: {"reason": value}),
        LINE,
        200,
        "erroneous",
        last_version_reason,
    ),
    Field(
        "POST /api/halts",
        "scope",
        api_json("/api/halts", lambda world, value: {"scope": value, "target": "COIN", "active": True, "reason": "x"}),
        IDENTIFIER,
        8,
        "Ticker",
    ),
    Field(
        "POST /api/halts",
        "target",
        api_json(
            "/api/halts", lambda world, value: {"scope": "Ticker", "target": value, "active": True, "reason": "x"}
        ),
        IDENTIFIER,
        12,
        "COIN",
    ),
    Field(
        "POST /api/halts",
        "reason",
        api_json(
            "/api/halts", lambda world, value: {"scope": "Ticker", "target": "COIN", "active": True, "reason": value}
        ),
        LINE,
        2000,
        "news pending",
        last_halt_reason,
    ),
    Field(
        "POST /api/market-data",
        "tickers",
        api_json("/api/market-data", lambda world, value: {"tickers": [value]}),
        IDENTIFIER,
        12,
        "COIN",
    ),
    # staff screens
    *[
        Field("POST /orders/ticket/", name, screen_post("/orders/ticket/", ticket(name)), kind, length, sample)
        for name, kind, length, sample in [
            ("customer", IDENTIFIER, 6, "000002"),
            ("ticker", IDENTIFIER, 12, "COIN"),
            ("client_order_id", IDENTIFIER, 64, "abc-1"),
            ("direction", IDENTIFIER, 4, "Buy"),
            ("order_type", IDENTIFIER, 6, "Limit"),
            ("time_in_force", IDENTIFIER, 3, "Day"),
            ("price", IDENTIFIER, 20, "250.00"),
            ("quantity", IDENTIFIER, 20, "10"),
        ]
    ],
    Field(
        "POST /operations/halts/",
        "scope",
        screen_post("/operations/halts/", lambda world, value: {"scope": value, "target": "COIN", "reason": "x"}),
        IDENTIFIER,
        8,
        "Ticker",
    ),
    Field(
        "POST /operations/halts/",
        "target",
        screen_post("/operations/halts/", lambda world, value: {"scope": "Ticker", "target": value, "reason": "x"}),
        IDENTIFIER,
        12,
        "COIN",
    ),
    Field(
        "POST /operations/halts/",
        "reason",
        screen_post("/operations/halts/", lambda world, value: {"scope": "Ticker", "target": "COIN", "reason": value}),
        LINE,
        2000,
        "news pending",
        last_halt_reason,
    ),
    Field(
        "POST /operations/trades/{id}/correct/",
        "reason",
        screen_post(trade_screen, lambda world, value: {"action": "amend", "price": "255.00", "reason": value}),
        LINE,
        200,
        "agreed",
        last_version_reason,
    ),
    Field(
        "POST /operations/trades/{id}/correct/",
        "price",
        screen_post(trade_screen, lambda world, value: {"action": "amend", "price": value, "reason": "agreed"}),
        IDENTIFIER,
        20,
        "255.00",
    ),
    Field(
        "POST /operations/trades/{id}/correct/",
        "quantity",
        screen_post(trade_screen, lambda world, value: {"action": "amend", "quantity": value, "reason": "agreed"}),
        IDENTIFIER,
        20,
        "1",
    ),
    Field(
        "POST /operations/breaks/{id}/ comment",
        "text",
        screen_post(break_screen, lambda world, value: {"action": "comment", "text": value}),
        TEXT,
        2000,
        "looked at it",
        last_comment,
    ),
    Field(
        "POST /operations/breaks/{id}/ resolve",
        "resolution",
        screen_post(break_screen, lambda world, value: {"action": "resolve", "resolution": value}),
        TEXT,
        2000,
        "restored",
        resolution,
    ),
    Field(
        "POST /orders/bulk/ generate",
        "count",
        screen_post("/orders/bulk/", lambda world, value: {"generate": "1", "count": value}),
        IDENTIFIER,
        6,
        "5",
    ),
    Field(
        "POST /tickers/refresh/",
        "symbol",
        screen_post("/tickers/refresh/", lambda world, value: {"symbol": value}),
        IDENTIFIER,
        12,
        "COIN",
    ),
    # CSV rows of a bulk upload: each column is a field of the row
    *[
        Field("POST /orders/bulk/ csv row", name, csv_upload(name), IDENTIFIER, length, sample)
        for name, length, sample in [
            ("customerId", 6, "000002"),
            ("ticker", 12, "COIN"),
            ("clientOrderId", 64, "row-1"),
            ("direction", 4, "Buy"),
            ("type", 6, "Limit"),
            ("timeInForce", 3, "Day"),
            ("price", 20, "250.00"),
            ("quantity", 20, "10"),
        ]
    ],
    # admin forms
    Field(
        "POST /admin/orders/halt/add/",
        "reason",
        admin_post(
            "/admin/orders/halt/add/",
            lambda world, value: {
                "scope": "Ticker",
                "ticker": str(world.market["ticker"].pk),
                "active": "on",
                "reason": value,
                "events-TOTAL_FORMS": "0",
                "events-INITIAL_FORMS": "0",
            },
        ),
        LINE,
        2000,
        "news pending",
        last_halt_reason,
    ),
    Field(
        "POST /admin/broker/customer/{id}/change/",
        "name",
        admin_post(customer_admin, customer_admin_form),
        LINE,
        200,
        "Jane Doe",
        lambda world: Customer.objects.get(customer_id="000002").name,
    ),
    Field(
        "POST /admin/reporting/break/{id}/change/",
        "comment",
        admin_post(break_admin, break_admin_form("comment")),
        TEXT,
        2000,
        "looked at it",
        last_comment,
    ),
    Field(
        "POST /admin/reporting/break/{id}/change/",
        "resolution",
        admin_post(break_admin, break_admin_form("resolution")),
        TEXT,
        2000,
        "restored",
        resolution,
    ),
]


def bad_values(field: Field) -> list[tuple[str, str]]:
    values = [
        ("over-long", (field.sample * (field.max_length + 1))[: field.max_length + 1]),
        ("NUL", field.sample + "\x00"),
        ("escape character", field.sample + "\x1b[2J"),
    ]
    if field.kind == TEXT:  # line breaks are text there (see test_free_text_keeps_its_line_breaks)
        values.append(("bell inside", field.sample[:1] + "\x07" + field.sample[1:]))
    else:
        values.append(("trailing newline", field.sample + "\n"))
        # a regex's `$` matches before a final newline: full length + "\n" passed it into varchar(n)
        values.append(("full length and a newline", (field.sample * field.max_length)[: field.max_length] + "\n"))
        values.append(("carriage return inside", field.sample[:1] + "\r" + field.sample[1:]))
    if field.endpoint.startswith("POST /api/"):  # JSON can carry a lone surrogate; a form post cannot
        values.append(("lone surrogate", field.sample + "\ud800"))
    return values


def refusal_names_field(response: Any, field: Field) -> bool:
    """Whether the answer refuses the value and names the field, in the way its kind of endpoint does."""
    if field.endpoint.startswith("POST /api/"):
        return 400 <= response.status_code < 500 and field.name in response.json()
    if response.status_code == 400:  # the NUL guard's page
        return f"The field {field.name!r}" in html.unescape(response.content.decode())
    if "csv row" in field.endpoint:
        batch = BulkBatch.objects.order_by("-pk").first()
        if batch is None or response.status_code != 302:
            forms = [response.context[name] for name in ("upload_form",)] if response.context else []
            return any(form.errors.get("file") for form in forms)
        (row,) = batch.rows
        return field.name in row["errors"]
    if response.status_code == 302:  # refused by a redirect with a message
        return any(
            message.level == messages.ERROR and field.name in str(message)
            for message in get_messages(response.wsgi_request)
        )
    assert response.status_code == 200, response.status_code
    for context in response.context or []:
        for value in context.flatten().values():
            value = getattr(value, "form", value)  # the admin wraps its form
            errors = getattr(value, "errors", None)
            if isinstance(errors, dict) and errors.get(field.name) and hasattr(value, "fields"):
                return True
    return False


@pytest.mark.parametrize("field", [pytest.param(field, id=str(field)) for field in FIELDS])
def test_a_bad_string_is_refused_naming_its_field_and_nothing_is_written(market: Market, field: Field) -> None:
    # given the objects the endpoint acts on, and what is written so far (one world for all the field's
    # bad values: building it is most of the cost, and a refused value must leave it as it was anyway)
    world = World(market)
    world.prepare()
    before = world.written()
    batches = BulkBatch.objects.count()
    failures = []
    for label, value in bad_values(field):
        # when the field gets the bad value
        response = field.send(world, value)

        # then it is refused, naming the field, and nothing is half-written
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.content[:300]!r}")
        elif not refusal_names_field(response, field):
            failures.append(f"{label}: not refused naming {field.name}: {response.content[:300]!r}")
        elif world.written() != before:
            failures.append(f"{label}: something was written")
        elif "csv row" not in field.endpoint and BulkBatch.objects.count() != batches:
            failures.append(f"{label}: a bulk batch was recorded")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("field", [pytest.param(field, id=str(field)) for field in FIELDS])
def test_a_character_outside_the_basic_plane_is_refused_in_an_identifier_and_kept_in_free_text(
    market: Market, field: Field
) -> None:
    # given the objects the endpoint acts on
    world = World(market)
    world.prepare()
    before = world.written()
    value = field.sample + "\U0001f600"

    # when the field gets a character outside the Basic Multilingual Plane
    response = field.send(world, value)

    # then an identifier refuses it naming the field; free text stores it intact
    assert response.status_code < 500, response.content[:500]
    if field.kind == IDENTIFIER:
        assert refusal_names_field(response, field), response.content[:2000]
        assert world.written() == before
    else:
        assert field.stored is not None
        assert not refusal_names_field(response, field), response.content[:2000]
        assert field.stored(world) == value


def test_the_table_covers_every_string_of_the_api_write_serializers() -> None:
    """A new field on a write endpoint must get a row here."""
    api_rows = {(field.endpoint, field.name) for field in FIELDS if field.endpoint.startswith("POST /api/")}
    from orders.api.views import HaltListSetView
    from orders.validation import ORDER_FIELDS

    strings = set(ORDER_FIELDS) - {"quantity"}
    assert {name for endpoint, name in api_rows if endpoint == "POST /api/orders"} == strings
    halt_fields = set(HaltListSetView.InputSerializer().fields) - {"active"}
    assert {name for endpoint, name in api_rows if endpoint == "POST /api/halts"} == halt_fields


def test_a_trade_correction_reason_of_the_longest_allowed_length_is_kept(market: Market) -> None:
    # given a finished trade
    world = World(market)
    reason = "r" * TradeVersion._meta.get_field("reason").max_length  # type: ignore[operator]

    # when it is amended with a reason as long as allowed
    response = world.api.post(
        f"/api/trades/{world.trade.trade_id}/amend", {"price": "255.00", "reason": reason}, format="json"
    )

    # then it is accepted and stored whole
    assert response.status_code == 200, response.json()
    assert last_version_reason(world) == reason
    assert Trade.objects.get(pk=world.trade.pk).price == Decimal("255.00")


@pytest.mark.parametrize("field", [pytest.param(field, id=str(field)) for field in FIELDS if field.kind == TEXT])
def test_free_text_keeps_its_line_breaks(market: Market, field: Field) -> None:
    # given an open break
    world = World(market)
    world.prepare()
    value = "first line\r\nsecond line\n\tindented"

    # when the free-text field gets several lines
    response = field.send(world, value + "\n")

    # then they are kept (the surrounding whitespace is stripped, as in every field)
    assert response.status_code < 400, response.content[:2000]
    assert field.stored is not None
    assert field.stored(world) == value
