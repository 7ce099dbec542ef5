"""A dress rehearsal of the order flow, for a fresh process's warm-up (broker/warmup.py).

`rehearse_compiled` compiles the hot queries and runs each once on values no row has; what the first
order after a start still paid was the rest: the first INSERT and UPDATE of every order-flow table on
the process's database connection (Postgres loads each table's and index's catalog entries into a new
backend, and plans each statement), the ORM's first save of each model, the code of the placement,
routing, matching and settlement paths running for the first time. Measured on the bench's stack: the
first POST took 20-25 ms of server time against 9-12 for the next ones, and the first order's route and
match 15-25 ms more than the second's.

So a fresh process enters one order for a real customer and ticker, through the same services the API
and the workers use, and routes and matches it against the ticker's real book, as far as its role goes
(`Part`), and rolls everything back: nothing of it is ever committed, published or sent (after-commit
effects of a rolled-back transaction never run). It touches nobody else's work: the routing claims
only its own order (a route task skips orders another transaction holds and counts on their holder),
and the books it locks are ones a matcher waits for, never skips for good. What it leaves are gaps: the
gateway sequence and the book orders' ids it drew (sequences do not roll back).

What it cannot do is leave statements prepared: psycopg forgets (and deallocates) a connection's
prepared statements at every ROLLBACK, to a savepoint too, so it runs once; each statement is still
prepared at its fifth run by real orders. Settlement is not rehearsed: settling its own fills in the
same transaction would create ledger accounts after locking reservations, against the lock order, and
settlement is not on an order's way to its fill.
"""

from __future__ import annotations

from decimal import Decimal
from enum import IntEnum

from django.db import transaction


class Part(IntEnum):
    """How far a process's rehearsal goes: what the process itself does to an order."""

    PLACE = 1  # a web process: the gateway
    MATCH = 2  # an order worker: routing and matching


class _Rehearsal(Exception):
    """Raised at the end of the rehearsal's transaction: everything it did is rolled back."""


def order_flow_rehearse(part: Part) -> bool:
    """Place (and, for order workers, route and match) one marketable order of one share, then roll it
    all back; whether it ran. Nothing to rehearse on (no customer, no ticker whose books are ready and
    whose price is known) is not an error: False."""
    from broker.models import Customer, Ticker
    from orders.api.serializers import order_output, trade_output
    from orders.models import Trade
    from orders.services import order_place
    from orders.services.routing import order_route_as_batch
    from orders.validation import entry_ticker, parse_order_request
    from pools import selectors as pool_selectors
    from pools.liquidity import round_to_tick

    tickers = Ticker.objects.exclude(reference_price=None).order_by("pk")
    ticker = next((t for t in tickers if pool_selectors.books_known_ready(ticker_id=t.pk)), None)
    customer = Customer.objects.order_by("pk").first()
    if ticker is None or customer is None or ticker.reference_price is None:
        return False
    price = round_to_tick(ticker.reference_price * Decimal("1.02"), up=True)  # marketable: it trades
    body = {
        "customerId": customer.customer_id,
        "direction": "Buy",
        "ticker": ticker.symbol,
        "type": "Limit",
        "quantity": 1,
        "price": str(price),
        "timeInForce": "Day",
    }
    try:
        with transaction.atomic():
            request = parse_order_request(body)
            placement = order_place(
                request=request, customer=customer, ticker=entry_ticker(symbol=ticker.symbol), actor=None
            )
            order_output(placement.order)
            if part >= Part.MATCH:
                order_route_as_batch(order_id=placement.order.pk, ticker_id=ticker.pk)
                trades = Trade.objects.filter(order=placement.order).select_related("customer", "ticker", "pool")
                for trade in trades:
                    trade_output(trade)
            raise _Rehearsal
    except _Rehearsal:
        return True
