"""The warm-up's dress rehearsal of the order flow (orders/rehearsal.py): one real order placed, routed,
matched and settled against the real books, and nothing of it left behind or held from anyone else."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.apps import apps
from django.db import connection

from broker.celery import app as celery_app
from broker.celery import rehearsal_part
from orders import rehearsal, services
from orders.api import serializers
from orders.models import Order, OrderStatus
from orders.rehearsal import Part, order_flow_rehearse
from pools.models import BookOrder
from tests.conftest import Market, place

QUEUES = ("orders", "lit", "dark", "settlement", "marketdata", "reporting")


def _everything() -> dict[str, Any]:
    """Every row of every model of the order flow's apps (sequences aside), and every queued task."""
    rows: dict[str, Any] = {}
    for label in ("orders", "pools", "settlement", "broker"):
        for model in apps.get_app_config(label).get_models():
            rows[model._meta.label] = sorted(model._default_manager.values_list("pk", flat=True))
    rows["book orders"] = sorted(BookOrder.objects.values_list("pk", "remaining", "status"))
    with celery_app.connection_for_write() as broker:
        client = broker.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
        rows["queued"] = {queue: client.llen(queue) for queue in QUEUES}
    return rows


@pytest.mark.django_db(transaction=True)
def test_a_rehearsal_goes_through_every_part_and_leaves_nothing_behind(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the market, with a resting order the rehearsal's Buy would trade with
    seller = place("000003", direction="Sell", price="256.00", timeInForce="Day")
    services.orders_route(order_id=seller.pk, ticker_id=seller.ticker_id)
    before = _everything()
    traded: list[int] = []
    render = serializers.trade_output

    def trade_output_counted(trade: Any) -> dict[str, Any]:
        traded.append(trade.quantity)
        return render(trade)

    monkeypatch.setattr(serializers, "trade_output", trade_output_counted)

    # when an order worker rehearses (the furthest part: place, route, match)
    assert order_flow_rehearse(Part.MATCH)

    # then its one share traded inside the rehearsal (the fill rendered for its stream message, then by
    # the rehearsal), and not a row, a resting order's quantity or a queued task is different afterwards
    assert traded
    assert set(traded) == {1}
    assert _everything() == before


@pytest.mark.django_db(transaction=True)
def test_without_a_ready_ticker_there_is_nothing_to_rehearse(db: None) -> None:
    assert not order_flow_rehearse(Part.MATCH)


@pytest.mark.django_db(transaction=True)
def test_a_rehearsal_holds_no_one_else_s_order(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    # given two New orders of the ticker the rehearsal trades, and a rehearsal paused after routing and
    # matching its own order, its transaction still open
    first, second = place(price="256.00"), place("000003", price="256.00")
    paused, resume = threading.Event(), threading.Event()
    route = services.routing.order_route_as_batch

    def route_then_pause(**kwargs: Any) -> None:
        route(**kwargs)
        paused.set()
        resume.wait(10)

    monkeypatch.setattr(services.routing, "order_route_as_batch", route_then_pause)

    def rehearse() -> None:
        try:
            order_flow_rehearse(Part.MATCH)
        finally:
            connection.close()

    rehearsing = threading.Thread(target=rehearse)
    rehearsing.start()
    try:
        assert paused.wait(30)
        # when the ticker's route task runs meanwhile
        services.orders_route(order_id=first.pk, ticker_id=first.ticker_id, match_now=False)
        # then it routed both orders: the rehearsal held neither (a held one would have been skipped)
        statuses = dict(Order.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", "status"))
        assert statuses == {first.pk: OrderStatus.ROUTED, second.pk: OrderStatus.ROUTED}
    finally:
        resume.set()
        rehearsing.join(30)


def test_each_worker_rehearses_what_it_does() -> None:
    assert rehearsal_part({"orders", "lit", "dark"}) == Part.MATCH
    assert rehearsal_part({"settlement"}) is None
    assert rehearsal_part({"marketdata", "reporting"}) is None
    assert rehearsal.Part.PLACE < Part.MATCH
