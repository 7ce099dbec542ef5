"""The bench's breakdown of a latency run: each order's stages from the rows' own stamps, CPU per order."""

from __future__ import annotations

import time

import pytest

from bench import breakdown
from bench.breakdown import OrderTimes
from orders import services
from orders.models import StreamEvent
from tests.conftest import Market, place


def test_each_stage_is_the_time_between_two_moments_and_percentiles_are_nearest_rank() -> None:
    # given 100 orders whose stages grow with their number (order n: n ms, 2n, 3n, 4n)
    times = []
    for n in range(1, 101):
        ms = n / 1000
        times.append(OrderTimes(sent=0, accepted=ms, routed=3 * ms, traded=6 * ms, received=10 * ms))

    # when the percentiles are taken, then each stage has its own, over the orders
    percentiles = breakdown.stage_percentiles(times)
    assert list(percentiles) == list(breakdown.STAGES)
    assert percentiles["entry"] == pytest.approx((0.050, 0.090, 0.099))
    assert percentiles["to routing"] == pytest.approx((0.100, 0.180, 0.198))
    assert percentiles["routing and matching"] == pytest.approx((0.150, 0.270, 0.297))
    assert percentiles["to the stream"] == pytest.approx((0.200, 0.360, 0.396))
    assert "entry 50.0 / 90.0 / 99.0" in breakdown.describe_stages(times)
    assert breakdown.stage_percentiles([]) == {}


def test_cpu_per_order_is_each_process_s_seconds_over_the_orders_sent() -> None:
    before = {"web": 1.0, "worker-orders": 2.0, "bench (load generator)": 0.5}
    after = {"web": 1.5, "worker-orders": 2.25, "bench (load generator)": 0.6, "sequencer": 9.0}
    text = breakdown.describe_cpu(before, after, orders=100)
    # a process seen only at the end (started meanwhile) has no figure
    assert text == "CPU ms per order sent: web 5.00, worker-orders 2.50, bench (load generator) 1.00; total 8.5"
    assert breakdown.describe_cpu(before, after, orders=0) == "no order sent, no CPU per order"


@pytest.mark.django_db
def test_an_order_s_moments_come_from_its_own_rows(market: Market) -> None:
    # given a marketable order placed, then routed and filled (inline)
    sent = time.time()
    order = place(type="Market", quantity=100)
    services.orders_route(order_id=order.pk, ticker_id=order.ticker_id)
    received = time.time()

    # when its moments are read, then they are its order's, first child's and first fill event's stamps
    (moments,) = breakdown.order_times(sent={str(order.order_id): sent}, received={str(order.order_id): received})
    order.refresh_from_db()
    child = order.children.order_by("created_at").first()
    fill = StreamEvent.objects.filter(kind="fill").order_by("created_at").first()
    assert child is not None
    assert fill is not None
    assert fill.payload["trade"]["orderId"] == str(order.order_id)
    assert (moments.sent, moments.received) == (sent, received)
    assert moments.accepted == pytest.approx(order.created_at.timestamp(), abs=1e-6)
    assert moments.routed == pytest.approx(child.created_at.timestamp(), abs=1e-6)
    assert moments.traded == pytest.approx(fill.created_at.timestamp(), abs=1e-6)
    # and an order sent but never filled has none
    assert breakdown.order_times(sent={str(order.order_id): sent}, received={}) == []
