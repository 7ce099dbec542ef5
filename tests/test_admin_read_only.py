"""Records that only the services write are read-only in the admin, even for a superuser.

A Save on their change page would be an unlocked full-row UPDATE written from values read before the
form was posted: it could overwrite a fill, a status or a book's sequence a service had just written
under its row lock. The admin may browse them; changes go through services (the kill switch, the
reconciliation run, a market-data fetch, the break workflow).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.test import Client
from django.urls import reverse

from broker.marketdata import services as marketdata_services
from broker.models import MarketDataFailure, MarketDataJob
from orders.models import ChildOrder, Order, OrderEvent, Trade
from pools.models import Book, BookOrder, Execution
from tests.conftest import Market, drive, place

pytestmark = pytest.mark.django_db

SERVICE_RECORDS: list[type[models.Model]] = [
    Order,
    ChildOrder,
    Trade,
    OrderEvent,
    Book,
    BookOrder,
    Execution,
    MarketDataJob,
    MarketDataFailure,
]


def _url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _row(model: type[models.Model], pk: Any) -> dict[str, Any]:
    return model._default_manager.filter(pk=pk).values().get()


@pytest.fixture
def records(market: Market) -> dict[type[models.Model], models.Model]:
    """One row of each service-written model: a filled order (children, trades, executions, events,
    book orders) and a market-data job with a failure."""
    drive(place("000002", quantity=300, price="260.00"))
    job = marketdata_services.job_request(symbols=["COIN"], reason="admin", requested_by="test")
    MarketDataFailure.objects.create(job=job, symbol="COIN", what="quote", kind="network", error="down")
    rows = {model: model._default_manager.order_by("pk").last() for model in SERVICE_RECORDS}
    missing = [model.__name__ for model, row in rows.items() if row is None]
    assert not missing, f"no row to try: {missing}"
    return {model: row for model, row in rows.items() if row is not None}


@pytest.mark.parametrize("model", SERVICE_RECORDS, ids=lambda model: model.__name__)
def test_a_superuser_can_browse_but_not_change_service_records(
    model: type[models.Model], records: dict[type[models.Model], models.Model], admin_client: Client
) -> None:
    # given a row the services wrote
    row = records[model]
    before = _row(model, row.pk)
    change_url = _url(model, "change", row.pk)

    # when the superuser opens the list and the row, then posts its change form
    listing = admin_client.get(_url(model, "changelist"))
    detail = admin_client.get(change_url)
    posted = admin_client.post(change_url, {"_save": "Save"})

    # then both pages render, the row has no Save button, and the post is refused without a write
    assert listing.status_code == 200
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert posted.status_code == 403
    assert _row(model, row.pk) == before
    # and nothing can be added or deleted either
    assert admin_client.post(_url(model, "add"), {}).status_code == 403
    assert admin_client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model._default_manager.filter(pk=row.pk).exists()


def test_every_service_record_admin_is_read_only() -> None:
    # given the admin as registered (a new admin for one of these models must stay read-only)
    request = type("Request", (), {"user": None})()
    for model in SERVICE_RECORDS:
        model_admin = admin.site._registry[model]
        # then it grants no add, change or delete to anyone
        assert not model_admin.has_add_permission(request), model.__name__
        assert not model_admin.has_change_permission(request), model.__name__
        assert not model_admin.has_delete_permission(request), model.__name__


def test_admin_actions_that_call_services_still_work(
    records: dict[type[models.Model], models.Model], admin_client: Client
) -> None:
    # given the read-only records above
    from broker.models import Ticker
    from reporting.models import ReconciliationRun

    ticker = Ticker.objects.get(symbol="COIN")

    # when the superuser runs reconciliation and asks for a market-data fetch from the admin
    run = admin_client.post(reverse("admin:reporting_reconciliationrun_run"))
    fetch = admin_client.post(_url(Ticker, "changelist"), {"action": "fetch_now", "_selected_action": [str(ticker.pk)]})

    # then each went through its service
    assert run.status_code == 302
    assert ReconciliationRun.objects.exists()
    assert fetch.status_code == 302
    assert MarketDataJob.objects.filter(reason="admin", symbols=["COIN"]).count() == 2


def test_a_customers_initial_funds_cannot_be_changed_nor_an_unfunded_customer_added(
    market: Market, admin_client: Client
) -> None:
    # given a funded customer (its initial funds are posted to the ledger)
    from broker.models import Customer

    customer = Customer.objects.get(customer_id="000002")
    before = customer.initial_funds

    # when the superuser posts its change form with other initial funds, and tries to add a customer
    changed = admin_client.post(
        _url(Customer, "change", customer.pk),
        {"customer_id": "000002", "name": "Renamed", "email": "x@example.com", "initial_funds": "1.00"},
    )
    added = admin_client.get(_url(Customer, "add"))

    # then the name changes but the funds do not, and adding is refused
    assert changed.status_code == 302
    customer.refresh_from_db()
    assert customer.name == "Renamed"
    assert customer.initial_funds == before
    assert added.status_code == 403


def test_saving_a_ticker_writes_only_what_the_form_changed(market: Market, admin_client: Client) -> None:
    # given a ticker's change page opened by staff
    from decimal import Decimal

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from broker.models import Ticker

    ticker = Ticker.objects.get(symbol="COIN")
    page = admin_client.get(_url(Ticker, "change", ticker.pk))
    form = page.context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items() if name in form.fields}

    # when staff save a new reference price from that page
    data.update({"reference_price": "257.00", "_save": "Save"})
    with CaptureQueriesContext(connection) as queries:
        saved = admin_client.post(_url(Ticker, "change", ticker.pk), data)

    # then the reference price changed, and the UPDATE named only it: a market-data fetch storing the
    # last price between the admin's read and its write (the window a full-row save has) is not undone
    assert saved.status_code == 302, saved.content[:2000]
    ticker.refresh_from_db()
    assert ticker.reference_price == Decimal("257.00")
    updates = [query["sql"] for query in queries.captured_queries if query["sql"].startswith('UPDATE "broker_ticker"')]
    assert len(updates) == 1
    assert '"reference_price"' in updates[0]
    assert '"last_price"' not in updates[0]
