"""Per-order SQL query counts and service time, measured in-process on one thread without Celery.

One batch of `orders` crossing orders on one ticker goes through every step the workers take, each
step as it runs under load: placed one by one (the API), routed by the `route_order` task of each order
in turn (the first routes every New order of the ticker, the others find theirs routed; its books
busy, so it leaves the matching to the books' tasks), then each book matched once for all
the children waiting there (`match_book`), then every trade settled at once (`settle_trades`). The
queries of all four steps, divided by the orders, are the amortized cost per order. Runs before the
worker is started; the tasks its commits publish are dropped before the worker comes up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.hotbook import crossing_price


@dataclass(frozen=True, slots=True)
class QueryCounts:
    orders: int
    place: float  # queries per order, each step amortized over the batch
    route: float
    match: float
    settle: float
    books: int  # books the batch's children went to (one match each)
    trades: int
    seconds_per_order: float  # wall time of the service calls of all four steps, per order

    @property
    def per_order(self) -> float:
        return self.place + self.route + self.match + self.settle


def run(*, symbol: str, orders: int = 20) -> QueryCounts:
    from broker.models import Customer, Ticker
    from orders import services
    from orders.models import ChildOrder, Order, Trade
    from orders.validation import parse_order_request

    ticker = Ticker.objects.get(symbol=symbol)
    assert ticker.reference_price is not None
    customers = list(Customer.objects.order_by("customer_id"))
    requests = []
    for number in range(orders):
        direction = "Buy" if number % 2 == 0 else "Sell"
        body = {
            "customerId": customers[number % len(customers)].customer_id,
            "direction": direction,
            "ticker": symbol,
            "type": "Limit",
            "quantity": 100,
            "price": str(crossing_price(ticker.reference_price, direction)),
            "timeInForce": "Day",
        }
        requests.append((customers[number % len(customers)], parse_order_request(body)))
    # Warm the per-process caches (venues, books) as a running worker has them.
    from pools import services as pool_services

    pool_services.books_ensure(ticker_id=ticker.pk)

    started = time.perf_counter()
    order_ids: list[int] = []
    place_queries = 0
    for customer, request in requests:
        # The API view reads the ticker for each request (not counted here, as the customer).
        ticker = Ticker.objects.get(pk=ticker.pk)
        with CaptureQueriesContext(connection) as placed:
            order = services.order_place(request=request, customer=customer, ticker=ticker, actor=None).order
        order_ids.append(order.pk)
        place_queries += len(placed.captured_queries)
    with CaptureQueriesContext(connection) as routed:
        for order_id in order_ids:
            services.orders_route(order_id=order_id, match_now=False)
    books = sorted(set(ChildOrder.objects.filter(parent_id__in=order_ids).values_list("pool_id", "parent__ticker_id")))
    with CaptureQueriesContext(connection) as matched:
        for pool_id, ticker_id in books:
            services.book_match(pool_id=pool_id, ticker_id=ticker_id)
    trade_ids = list(Trade.objects.filter(order_id__in=order_ids).values_list("pk", flat=True))
    # Maker trades of resting orders from outside the batch settle too, as the worker would.
    with CaptureQueriesContext(connection) as settled:
        services.trades_settle(trade_ids=trade_ids)
    seconds = time.perf_counter() - started
    assert not Order.objects.filter(pk__in=order_ids, status="New").exists(), "an order of the batch was not routed"
    return QueryCounts(
        orders=orders,
        place=place_queries / orders,
        route=len(routed.captured_queries) / orders,
        match=len(matched.captured_queries) / orders,
        settle=len(settled.captured_queries) / orders,
        books=len(books),
        trades=len(trade_ids),
        seconds_per_order=seconds / orders,
    )
