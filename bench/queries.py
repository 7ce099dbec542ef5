"""Per-order SQL query counts and service time, measured in-process on one thread without Celery.

Explains the hot-book figure: every routed order costs a `route_order` and a `match_child` task, and
their SQL round trips (not the matching engine) are where the time goes. Runs before the worker is
started; the tasks its commits publish are dropped before the worker comes up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import mean

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.hotbook import crossing_price


@dataclass(frozen=True, slots=True)
class QueryCounts:
    orders: int
    place: float  # mean queries per order_place
    route: float  # mean queries per order_route
    match: float  # mean queries per child_match
    children: int
    seconds_per_order: float  # place + route + match of all its children, wall time of the service calls

    @property
    def per_order(self) -> float:
        return self.place + self.route + self.match * self.children / self.orders


def run(*, symbol: str, orders: int = 20) -> QueryCounts:
    from broker.models import Customer, Ticker
    from orders import services
    from orders.selectors import children_in_flight
    from orders.validation import parse_order_request

    ticker = Ticker.objects.get(symbol=symbol)
    assert ticker.reference_price is not None
    customers = list(Customer.objects.order_by("customer_id"))
    place_counts: list[int] = []
    route_counts: list[int] = []
    match_counts: list[int] = []
    service_seconds = 0.0
    for number in range(orders):
        direction = "Buy" if number % 2 == 0 else "Sell"
        customer = customers[number % len(customers)]
        request = parse_order_request(
            {
                "customerId": customer.customer_id,
                "direction": direction,
                "ticker": symbol,
                "type": "Limit",
                "quantity": 100,
                "price": str(crossing_price(ticker.reference_price, direction)),
                "timeInForce": "Day",
            }
        )
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as placed:
            order = services.order_place(request=request, customer=customer, ticker=ticker, actor=None).order
        with CaptureQueriesContext(connection) as routed:
            services.order_route(order_id=order.pk)
        service_seconds += time.perf_counter() - started
        place_counts.append(len(placed.captured_queries))
        route_counts.append(len(routed.captured_queries))
        # Exactly what the worker would do next: send each in-flight child (re-routes included).
        for _ in range(10):
            in_flight = list(children_in_flight(parent=order).values_list("pk", "attempt"))
            if not in_flight:
                break
            for child_id, attempt in in_flight:
                started = time.perf_counter()
                with CaptureQueriesContext(connection) as matched:
                    services.child_match(child_id=child_id, attempt=attempt)
                service_seconds += time.perf_counter() - started
                match_counts.append(len(matched.captured_queries))
    return QueryCounts(
        orders=orders,
        place=mean(place_counts),
        route=mean(route_counts),
        match=mean(match_counts) if match_counts else 0.0,
        children=len(match_counts),
        seconds_per_order=service_seconds / orders,
    )
