"""The order pipeline's SQL budget: place + route + match + settle of a batch of 20 orders, per order.

The same measurement `make bench` reports (bench/queries.py), pinned here so a change that adds round
trips to the hot path fails a test instead of quietly costing throughput. Query counts, not timings.
"""

from __future__ import annotations

import pytest

from bench import queries
from orders.models import Order, OrderStatus, Trade
from tests.conftest import Market

BUDGET_PER_ORDER = 15


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_20_orders_costs_at_most_15_queries_per_order(market: Market) -> None:
    result = queries.run(symbol="COIN", orders=20)

    assert result.per_order <= BUDGET_PER_ORDER, result
    # The batch really went through: every order filled, every trade settled.
    batch = Order.objects.order_by("-pk")[:20]
    assert {order.status for order in batch} == {OrderStatus.FILLED}
    assert not Trade.objects.filter(settlement_date__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_matching_a_book_costs_the_same_queries_for_10_or_40_children(market: Market) -> None:
    small = queries.run(symbol="COIN", orders=10)
    large = queries.run(symbol="COIN", orders=40)

    # Per batch, not per child: 4x the children, (about) the same statements.
    assert large.match * 40 <= small.match * 10 + 2, (small, large)
    assert large.settle * 40 <= small.settle * 10 + 2, (small, large)
