"""The nightly aggregation over a year of generated trades, against a hand-written GROUP BY baseline.

`trades` trades are generated over the last `days` XNYS sessions up to the shipped daily bars' last
date (so every day has a real close), spread over the demo customers and tickers, each with its own
venue execution (a trade is unique per execution and child), and loaded with COPY. Then, in the same
run and on the same rows:

- the product: `reporting.aggregation.days_aggregate` over every day, one transaction per day (three
  upserts carrying the running totals forward from the day before, closes looked up per position);
- the baseline: three hand-written `INSERT ... SELECT ... GROUP BY` statements over all the trades at
  once (per day and customer, per day and ticker, per day, customer and ticker), into plain tables with
  the same grouping and sums but none of the product's carrying forward, valuation or upsert.

The ratio product / baseline is what issue 12 bounds (<= 1.5).

Then the customer statement screen over that year (`/reports/customers/<id>/` with the year's range, the
customer with the most trades) is requested in-process through Django's whole stack (middleware, the
view, the template) as a logged-in Trader: its server time, the median of `STATEMENT_REQUESTS` requests
after a warm-up, is what issue 12 bounds (< 100 ms), next to a raw SELECT of the same stored rows.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection, transaction

CENT = Decimal("0.01")
FEE_RATE = Decimal("0.0003")
# The shipped daily bars (broker/data/prices) end here: the generated year closes on real bars.
LAST_BAR_DAY = date(2024, 3, 8)

BASELINE_SQL = [
    """
    CREATE TABLE bench_customer_day AS
    SELECT (t.trade_date AT TIME ZONE 'America/New_York')::date AS day, t.customer_id,
           COUNT(*) AS nr_trades,
           SUM(round(t.quantity * t.price, 2)) FILTER (WHERE t.direction = 'Buy') AS buy_notional,
           SUM(round(t.quantity * t.price, 2)) FILTER (WHERE t.direction = 'Sell') AS sell_notional,
           SUM(t.fee) AS fees,
           SUM(CASE WHEN t.direction = 'Buy' THEN -(round(t.quantity * t.price, 2) + t.fee)
                    ELSE round(t.quantity * t.price, 2) - t.fee END) AS cash
    FROM orders_trade t WHERE NOT t.busted
    GROUP BY 1, 2
    """,
    """
    CREATE TABLE bench_ticker_day AS
    SELECT (t.trade_date AT TIME ZONE 'America/New_York')::date AS day, t.ticker_id,
           COUNT(*) AS nr_trades, SUM(t.quantity) AS volume, SUM(round(t.quantity * t.price, 2)) AS notional,
           round(SUM(t.quantity * t.price) / SUM(t.quantity), 4) AS vwap,
           (array_agg(t.price ORDER BY t.trade_date, t.id))[1] AS open, MAX(t.price) AS high,
           MIN(t.price) AS low, (array_agg(t.price ORDER BY t.trade_date DESC, t.id DESC))[1] AS last,
           SUM(t.quantity) FILTER (WHERE t.direction = 'Buy') AS buy_volume,
           SUM(t.quantity) FILTER (WHERE v.kind = 'Lit') AS lit_volume, SUM(t.fee) AS fees
    FROM orders_trade t JOIN pools_pool v ON v.id = t.pool_id WHERE NOT t.busted
    GROUP BY 1, 2
    """,
    """
    CREATE TABLE bench_position_day AS
    SELECT (t.trade_date AT TIME ZONE 'America/New_York')::date AS day, t.customer_id, t.ticker_id,
           SUM(CASE WHEN t.direction = 'Buy' THEN t.quantity ELSE -t.quantity END) AS moved,
           SUM(CASE WHEN t.direction = 'Buy' THEN t.quantity ELSE -t.quantity END * t.price) AS value,
           SUM(round(t.quantity * t.price, 2)) FILTER (WHERE t.direction = 'Buy') AS bought_amount
    FROM orders_trade t WHERE NOT t.busted
    GROUP BY 1, 2, 3
    """,
]


@dataclass(frozen=True, slots=True)
class AggregationResult:
    trades: int
    days: int
    load_seconds: float
    product_seconds: float
    baseline_seconds: float
    rows: int  # rows the product wrote over all days and tables
    statement_ms: float  # median server time of the customer statement page over the whole range
    statement_days: int  # day rows that page showed
    statement_select_ms: float  # median time of a plain SELECT of the same customer-day rows

    @property
    def ratio(self) -> float:
        return self.product_seconds / self.baseline_seconds


def _sessions(count: int) -> list[date]:
    import exchange_calendars

    calendar = exchange_calendars.get_calendar("XNYS", start=LAST_BAR_DAY - timedelta(days=2 * count))
    sessions = calendar.sessions_in_range(LAST_BAR_DAY - timedelta(days=2 * count), LAST_BAR_DAY)
    return [session.date() for session in sessions][-count:]


def load(*, trades: int, days: int, seed: int = 20261204) -> list[date]:
    """COPY `trades` generated trades (with an execution each) over the last `days` sessions."""
    from broker.models import Customer, Ticker
    from orders.models import Trade
    from pools.models import Execution, Pool
    from reporting.aggregation import MARKET_TZ

    template = Trade.objects.order_by("pk").first()
    if template is None:
        raise RuntimeError("no trade to model the generated ones on (the query-count phase makes some)")
    customers = list(Customer.objects.values_list("pk", flat=True))
    tickers = [
        (pk, price)
        for pk, price in Ticker.objects.exclude(reference_price=None).values_list("pk", "reference_price")
        if price is not None
    ]
    pools = list(Pool.objects.values_list("pk", flat=True))
    sessions = _sessions(days)
    rng = random.Random(seed)
    execution_columns = [
        str(field.column) for field in Execution._meta.concrete_fields if field.column not in ("id", "execution_id")
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {Execution._meta.db_table} (execution_id, {", ".join(execution_columns)})
                SELECT gen_random_uuid(), {", ".join(execution_columns)}
                FROM {Execution._meta.db_table}, generate_series(1, %s) WHERE id = %s
                RETURNING id""",
            [trades, template.execution_id],
        )
        execution_ids = [row[0] for row in cursor.fetchall()]
        columns = (
            "trade_id, order_id, child_id, execution_id, customer_id, ticker_id, pool_id, direction, quantity, "
            "price, fee, liquidity, trade_date, version, busted"
        )
        with cursor.cursor.copy(f"COPY orders_trade ({columns}) FROM STDIN") as copy:
            for number, execution_id in enumerate(execution_ids):
                ticker_id, reference = tickers[number % len(tickers)]
                day = sessions[number * len(sessions) // trades]
                moment = datetime(day.year, day.month, day.day, 9, 30, tzinfo=MARKET_TZ) + timedelta(
                    seconds=rng.randrange(6 * 3600 + 1800)
                )
                quantity = rng.randint(1, 500)
                price = (reference * Decimal(1 + rng.uniform(-0.05, 0.05))).quantize(CENT)
                fee = (price * quantity * FEE_RATE).quantize(CENT, rounding=ROUND_HALF_UP)
                copy.write_row(
                    (
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        template.order_id,
                        template.child_id,
                        execution_id,
                        rng.choice(customers),
                        ticker_id,
                        rng.choice(pools),
                        rng.choice(("Buy", "Sell")),
                        quantity,
                        price,
                        fee,
                        "Taker",
                        moment,
                        1,
                        False,
                    )
                )
    with connection.cursor() as cursor:
        # Vacuumed now rather than by autovacuum in the middle of a measurement (a million inserts trip
        # its insert threshold); both sides then read the same settled table.
        cursor.execute("VACUUM (ANALYZE) orders_trade")
        cursor.execute("VACUUM (ANALYZE) pools_execution")
    return sessions


STATEMENT_REQUESTS = 20
STATEMENT_USER = "bench-statement"


def _median_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1000


def statement_page(*, first: date, last: date) -> tuple[float, int, float]:
    """The statement screen's median server time for the busiest customer over [first, last], the day rows
    it showed, and the median time of a raw SELECT of those rows."""
    from django.contrib.auth.models import User
    from django.db.models import Count
    from django.test import Client

    from broker.models import Customer
    from orders import roles
    from reporting.models import CustomerDay
    from reporting.selectors import DateRange, customer_day_list

    busiest = (
        CustomerDay.objects.filter(date__range=(first, last))
        .values("customer__customer_id")
        .annotate(days=Count("id"))
        .order_by("-days", "customer__customer_id")
        .first()
    )
    if busiest is None:
        raise RuntimeError("no stored customer day to show")
    customer_id = busiest["customer__customer_id"]
    user, _ = roles.staff_member_ensure(username=STATEMENT_USER, password=uuid.uuid4().hex, group=roles.TRADER)
    client = Client()
    assert isinstance(user, User)
    client.force_login(user)
    url = f"/reports/customers/{customer_id}/?start={first.isoformat()}&end={last.isoformat()}"
    for _ in range(3):  # warm-up: templates compiled, connections and caches primed
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
    page: list[float] = []
    for _ in range(STATEMENT_REQUESTS):
        began = time.perf_counter()
        response = client.get(url)
        page.append(time.perf_counter() - began)
    # The rows the page showed: what its selector reads (the test client keeps no template context outside
    # the test runner).
    customer = Customer.objects.get(customer_id=customer_id)
    shown = customer_day_list(customer=customer, dates=DateRange(first, last)).count()
    select: list[float] = []
    with connection.cursor() as cursor:
        for _ in range(STATEMENT_REQUESTS):
            began = time.perf_counter()
            cursor.execute(
                f"""SELECT d.* FROM {CustomerDay._meta.db_table} d JOIN broker_customer c ON c.id = d.customer_id
                    WHERE c.customer_id = %s AND d.date BETWEEN %s AND %s ORDER BY d.date""",
                [customer_id, first, last],
            )
            cursor.fetchall()
            select.append(time.perf_counter() - began)
    return _median_ms(page), shown, _median_ms(select)


def run(*, trades: int, days: int = 250) -> AggregationResult:
    from reporting import aggregation
    from reporting.models import CustomerDay, PositionSnapshot, TickerDay

    started = time.perf_counter()
    sessions = load(trades=trades, days=days)
    loaded = time.perf_counter()

    with connection.cursor() as cursor:
        began = time.perf_counter()
        for statement in BASELINE_SQL:
            cursor.execute(statement)
        baseline = time.perf_counter() - began
        for table in ("bench_customer_day", "bench_ticker_day", "bench_position_day"):
            cursor.execute(f"DROP TABLE {table}")

    began = time.perf_counter()
    aggregation.days_aggregate(sessions)
    product = time.perf_counter() - began
    rows = sum(model.objects.count() for model in (CustomerDay, PositionSnapshot, TickerDay))
    statement_ms, statement_days, statement_select_ms = statement_page(first=sessions[0], last=sessions[-1])
    return AggregationResult(
        trades=trades,
        days=len(sessions),
        load_seconds=loaded - started,
        product_seconds=product,
        baseline_seconds=baseline,
        rows=rows,
        statement_ms=statement_ms,
        statement_days=statement_days,
        statement_select_ms=statement_select_ms,
    )
