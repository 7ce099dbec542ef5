"""Matched orders/s on one hot book: N crossing orders on ONE ticker, drained by the real worker.

The orders are placed through the same service the API uses (`orders.services.order_place`), all in
one transaction, so every `route_order` task is published right after that one commit: the clock
starts there, and stops when no order of the batch is still New and no child is still in flight.
What is measured is therefore the worker side only (routing + matching + persistence), not HTTP.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q

CENT = Decimal("0.01")
# Inside the simulated providers' ladders (2-57 bp from the reference), so each order takes the best
# displayed level and the book keeps being replenished rather than swept empty.
CROSS = Decimal("0.002")
# Small enough that every order of the batch passes the pre-trade checks although all are placed (and
# reserve cash or shares) before any fills: 500 orders over the ten demo customers are 25 sells each,
# 250 of the 1,000 shares each holds, and 25 buys of about $1,700. A rejected order would count as done
# without any routing or matching. Each order is still one child matched against the book.
QUANTITY = 10


@dataclass(slots=True)
class HotBookResult:
    orders: int
    seconds: float
    finished: bool
    pending: int
    statuses: Counter[str] = field(default_factory=Counter)
    venues: Counter[str] = field(default_factory=Counter)
    trades: int = 0

    @property
    def orders_per_second(self) -> float:
        return (self.orders - self.pending) / self.seconds if self.seconds else 0.0


def crossing_price(reference: Decimal, direction: str, cross: Decimal = CROSS) -> Decimal:
    """A limit through the reference price by `cross`, on the cent tick (prices here are all above $1)."""
    if direction == "Buy":
        return (reference * (1 + cross)).quantize(CENT, rounding=ROUND_CEILING)
    return (reference * (1 - cross)).quantize(CENT, rounding=ROUND_FLOOR)


def run(*, symbol: str, orders: int, timeout: float, poll: float = 0.05) -> HotBookResult:
    from broker.models import Customer, Ticker
    from orders import services
    from orders.models import FINAL_CHILD_STATUSES, ChildOrder, Order, OrderStatus, Trade
    from orders.validation import parse_order_request

    ticker = Ticker.objects.get(symbol=symbol)
    assert ticker.reference_price is not None
    customers = list(Customer.objects.order_by("customer_id"))
    with transaction.atomic():
        first_id = None
        for number in range(orders):
            # Consecutive orders alternate Buy and Sell (so they cross each other), and so does each
            # customer's own sequence: with an even number of customers plain parity made half of them
            # sell only, past their holdings, and be rejected, which is not matching work, and left
            # their accounts skewed for the phases after this one.
            shift = number // len(customers) if len(customers) % 2 == 0 else 0
            direction = "Buy" if (number + shift) % 2 == 0 else "Sell"
            customer = customers[number % len(customers)]
            request = parse_order_request(
                {
                    "customerId": customer.customer_id,
                    "direction": direction,
                    "ticker": symbol,
                    "type": "Limit",
                    "quantity": QUANTITY,
                    "price": str(crossing_price(ticker.reference_price, direction)),
                    "timeInForce": "Day",
                }
            )
            placed = services.order_place(request=request, customer=customer, ticker=ticker, actor=None).order
            first_id = first_id or placed.pk
        # The route tasks are published by on_commit hooks as this block commits: the first enqueue.
        start = time.perf_counter()
    assert first_id is not None

    batch = Order.objects.filter(ticker=ticker, pk__gte=first_id)
    in_flight_child = ChildOrder.objects.filter(parent=OuterRef("pk"), attempt__gt=F("submitted_attempt")).exclude(
        status__in=FINAL_CHILD_STATUSES
    )
    not_done = batch.filter(Q(status=OrderStatus.NEW) | Exists(in_flight_child))
    deadline = start + timeout
    pending = orders
    while True:
        pending = not_done.count()
        now = time.perf_counter()
        if pending == 0 or now > deadline:
            break
        time.sleep(poll)
    elapsed = now - start

    result = HotBookResult(orders=orders, seconds=elapsed, finished=pending == 0, pending=pending)
    result.statuses.update(batch.values_list("status", flat=True))
    result.venues.update(
        ChildOrder.objects.filter(parent__in=batch, pool__isnull=False).values_list("pool__name", flat=True)
    )
    result.trades = Trade.objects.filter(order__in=batch).count()
    return result
