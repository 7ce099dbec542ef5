"""The nightly aggregation: per trading day, position snapshots, customer days and ticker days, in SQL.

A trading day is a date in America/New_York; a trade belongs to the day of its `trade_date` there.
Each day is one set-based statement (no Python loop over trades) of three upserts, prepared once per
connection, run in a transaction under one advisory lock (two aggregations never interleave; a run
over many days takes up to `DAYS_PER_TRANSACTION` of them per transaction); the window's trades are
read once for all three:

1. positions: the previous stored day's snapshot (the latest day before, whatever the gap) plus every
   trade and share transfer since its close, grouped per (customer, ticker), valued at the day's close;
2. customers: the previous stored day's running totals plus the trades and cash movements since, and
   the sums of the day's positions;
3. tickers: the day's trades grouped per ticker.

Each upsert is on the table's unique key, and rows of the day it did not touch (a position or
ticker whose only trade was busted since) are deleted: running a day twice leaves the same rows.
Running totals carry forward from the previous stored day, so a day's rows are only right when the
days before are: `days_aggregate` goes in date order, and a correction re-computes its day and every
stored day after it (`days_after_correction`).

Definitions (docs/reporting.md has the worked example the tests check):
- close of a ticker at day D: its last daily bar on or before D (`close_date` says which);
- trade P&L of D: sum over D's trades of (close - price) x signed quantity (buys +, sells -);
- position P&L of D: (close at D - close at D-1) x the quantity carried into D;
- notional of a trade: quantity x price rounded half-up to the cent, as the ledger posts it; cash moves
  by -(notional + fee) for a buy and +(notional - fee) for a sell, and by every non-trade cash posting
  (initial funding, deposits);
- average cost: what the shares bought or transferred in cost, per share, since the position was last
  flat at a close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.contrib.postgres.aggregates import BoolOr
from django.db import connection, transaction
from django.utils import timezone

from broker.sql import execute_prepared, script_cursor
from reporting.models import CustomerDay, PositionSnapshot, TickerDay

MARKET_TZ = ZoneInfo("America/New_York")
# Before any record: where a day with no stored day before it starts counting.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# pg_advisory_xact_lock key: one aggregation at a time (days build on each other).
AGGREGATION_LOCK = 7_211_012

# Trades as the books stand now: every version's replacement is already applied to the row itself.
_TRADES = "orders_trade"
_SIGNED = "CASE WHEN t.direction = 'Buy' THEN t.quantity ELSE -t.quantity END"
_NOTIONAL = "round(t.quantity * t.price, 2)"
_CASH = f"CASE WHEN t.direction = 'Buy' THEN -({_NOTIONAL} + t.fee) ELSE {_NOTIONAL} - t.fee END"
# Ledger movements that are not trades: trades are read from the trades themselves (by trade date),
# the ledger for what only it knows (funding, deposits, transfers in), by when they were posted.
_NOT_TRADE = "e.purpose NOT IN ('TradeSettlement', 'TradeReversal')"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=MARKET_TZ)


def trading_day(moment: datetime) -> date:
    return timezone.localtime(moment, MARKET_TZ).date()


def today() -> date:
    return trading_day(timezone.now())


@dataclass(frozen=True, slots=True)
class DayResult:
    day: date
    provisional: bool
    positions: int
    customers: int
    tickers: int


def _close(alias: str, ticker: str, day_param: str) -> str:
    """LATERAL subquery: the ticker's last daily bar on or before the day."""
    return f"""LEFT JOIN LATERAL (
            SELECT b.close, b.date FROM broker_pricebar b
            WHERE b.ticker_id = {ticker} AND b.date <= %({day_param})s ORDER BY b.date DESC LIMIT 1
        ) {alias} ON true"""  # noqa: S608 - module constants and aliases only


# The whole day in one statement: the window's trades are read once, and the three upserts are
# data-modifying CTEs (each runs exactly once, whether or not the outer query reads it); the customers'
# upsert sums the positions this very statement wrote, from their RETURNING rows.
DAY_SQL = f"""
WITH trades AS MATERIALIZED (
    SELECT t.id, t.customer_id, t.ticker_id, t.pool_id, t.direction, t.quantity, t.price, t.fee, t.trade_date,
           {_SIGNED} AS signed, {_NOTIONAL} AS notional, {_CASH} AS cash, t.trade_date >= %(start)s AS today
    FROM {_TRADES} t
    WHERE NOT t.busted AND t.trade_date >= %(since)s AND t.trade_date < %(end)s
), prev AS (
    SELECT customer_id, ticker_id, quantity,
           CASE WHEN quantity = 0 THEN 0 ELSE bought_quantity END AS bought_quantity,
           CASE WHEN quantity = 0 THEN 0 ELSE bought_amount END AS bought_amount
    FROM reporting_positionsnapshot WHERE date = %(prev)s
), position_trades AS (
    SELECT customer_id, ticker_id,
           SUM(signed) AS moved,
           SUM(signed) FILTER (WHERE NOT today) AS moved_before,
           SUM(quantity) FILTER (WHERE direction = 'Buy') AS bought,
           SUM(notional) FILTER (WHERE direction = 'Buy') AS bought_amount,
           SUM(signed) FILTER (WHERE today) AS day_moved,
           SUM(signed * price) FILTER (WHERE today) AS day_value,
           bool_or(today) AS traded
    FROM trades GROUP BY customer_id, ticker_id
), transfers AS (
    SELECT a.customer_id, k.id AS ticker_id,
           SUM(e.amount)::bigint AS moved,
           SUM(e.amount) FILTER (WHERE e.created_at < %(start)s)::bigint AS moved_before,
           SUM(e.amount * COALESCE(p.unit_cost, 0)) FILTER (WHERE e.amount > 0) AS bought_amount,
           SUM(e.amount) FILTER (WHERE e.amount > 0)::bigint AS bought
    FROM settlement_ledgerentry e
    JOIN settlement_account a ON a.id = e.account_id AND a.kind = 'CustomerSecurities'
    JOIN settlement_posting p ON p.id = e.posting_id
    JOIN broker_ticker k ON k.symbol = a.asset
    WHERE {_NOT_TRADE} AND e.created_at >= %(since)s AND e.created_at < %(end)s
    GROUP BY a.customer_id, k.id
), keys AS (
    SELECT customer_id, ticker_id FROM prev WHERE quantity <> 0
    UNION SELECT customer_id, ticker_id FROM position_trades
    UNION SELECT customer_id, ticker_id FROM transfers
), closes AS (
    -- Each ticker of the day looked up once (not once per position): its close and the day before's.
    SELECT k.id AS ticker_id, c.close, c.date AS close_date, pc.close AS previous_close
    FROM broker_ticker k
    {_close("c", "k.id", "day")}
    {_close("pc", "k.id", "previous_day")}
    WHERE k.id IN (SELECT ticker_id FROM keys)
), moved AS (
    SELECT k.customer_id, k.ticker_id,
           COALESCE(p.quantity, 0) + COALESCE(t.moved, 0) + COALESCE(x.moved, 0) AS quantity,
           COALESCE(p.quantity, 0) + COALESCE(t.moved_before, 0) + COALESCE(x.moved_before, 0) AS carried,
           COALESCE(p.bought_quantity, 0) + COALESCE(t.bought, 0) + COALESCE(x.bought, 0) AS bought_quantity,
           COALESCE(p.bought_amount, 0) + COALESCE(t.bought_amount, 0) + COALESCE(x.bought_amount, 0)
               AS bought_amount,
           COALESCE(t.day_moved, 0) AS day_moved, COALESCE(t.day_value, 0) AS day_value,
           COALESCE(t.traded, false) AS traded
    FROM keys k
    LEFT JOIN prev p ON p.customer_id = k.customer_id AND p.ticker_id = k.ticker_id
    LEFT JOIN position_trades t ON t.customer_id = k.customer_id AND t.ticker_id = k.ticker_id
    LEFT JOIN transfers x ON x.customer_id = k.customer_id AND x.ticker_id = k.ticker_id
), valued AS (
    SELECT m.*, c.close, c.close_date,
           round(m.quantity * COALESCE(c.close, 0), 2) AS market_value,
           round(COALESCE(c.close * m.day_moved - m.day_value, 0), 2) AS trade_pnl,
           round(COALESCE((c.close - COALESCE(c.previous_close, c.close)) * m.carried, 0), 2) AS position_pnl
    FROM moved m
    LEFT JOIN closes c ON c.ticker_id = m.ticker_id
    WHERE m.quantity <> 0 OR m.carried <> 0 OR m.traded
), positions AS (
    INSERT INTO reporting_positionsnapshot (
        customer_id, ticker_id, date, provisional, quantity, bought_quantity, bought_amount, average_cost,
        close, close_date, market_value, trade_pnl, position_pnl, total_pnl, updated
    )
    SELECT customer_id, ticker_id, %(day)s, %(provisional)s, quantity, bought_quantity, bought_amount,
           CASE WHEN bought_quantity > 0 THEN round(bought_amount / bought_quantity, 4) END,
           close, close_date, market_value, trade_pnl, position_pnl, trade_pnl + position_pnl, %(stamp)s
    FROM valued
    ON CONFLICT (customer_id, ticker_id, date) DO UPDATE SET
        provisional = EXCLUDED.provisional, quantity = EXCLUDED.quantity,
        bought_quantity = EXCLUDED.bought_quantity, bought_amount = EXCLUDED.bought_amount,
        average_cost = EXCLUDED.average_cost, close = EXCLUDED.close, close_date = EXCLUDED.close_date,
        market_value = EXCLUDED.market_value, trade_pnl = EXCLUDED.trade_pnl,
        position_pnl = EXCLUDED.position_pnl, total_pnl = EXCLUDED.total_pnl, updated = EXCLUDED.updated
    RETURNING customer_id, quantity, close, trade_pnl, position_pnl
), position_sums AS (
    SELECT customer_id, round(SUM(quantity * COALESCE(close, 0)), 2) AS market_value,
           SUM(trade_pnl) AS trade_pnl, SUM(position_pnl) AS position_pnl
    FROM positions GROUP BY customer_id
), customer_trades AS (
    SELECT customer_id, COUNT(*) AS nr, SUM(fee) AS fees,
           SUM(notional) FILTER (WHERE direction = 'Buy') AS invested, SUM(cash) AS cash,
           COUNT(*) FILTER (WHERE today) AS day_nr,
           SUM(notional) FILTER (WHERE today AND direction = 'Buy') AS day_buy,
           SUM(notional) FILTER (WHERE today AND direction = 'Sell') AS day_sell,
           SUM(fee) FILTER (WHERE today) AS day_fees
    FROM trades GROUP BY customer_id
), funding AS (
    SELECT a.customer_id, SUM(e.amount) AS cash
    FROM settlement_ledgerentry e
    JOIN settlement_account a ON a.id = e.account_id AND a.kind = 'CustomerCash'
    WHERE {_NOT_TRADE} AND e.created_at >= %(since)s AND e.created_at < %(end)s
    GROUP BY a.customer_id
), customers AS (
    INSERT INTO reporting_customerday (
        customer_id, date, provisional, nr_trades, buy_notional, sell_notional, commission_paid,
        total_nr_trades, total_commission_paid, total_amount_invested, remaining_fund, market_value,
        trade_pnl, position_pnl, total_pnl, updated
    )
    SELECT c.id, %(day)s, %(provisional)s,
           COALESCE(w.day_nr, 0), COALESCE(w.day_buy, 0), COALESCE(w.day_sell, 0), COALESCE(w.day_fees, 0),
           COALESCE(p.total_nr_trades, 0) + COALESCE(w.nr, 0),
           COALESCE(p.total_commission_paid, 0) + COALESCE(w.fees, 0),
           COALESCE(p.total_amount_invested, 0) + COALESCE(w.invested, 0),
           COALESCE(p.remaining_fund, 0) + COALESCE(w.cash, 0) + COALESCE(f.cash, 0),
           COALESCE(s.market_value, 0), COALESCE(s.trade_pnl, 0), COALESCE(s.position_pnl, 0),
           COALESCE(s.trade_pnl, 0) + COALESCE(s.position_pnl, 0), %(stamp)s
    FROM broker_customer c
    LEFT JOIN reporting_customerday p ON p.customer_id = c.id AND p.date = %(prev)s
    LEFT JOIN customer_trades w ON w.customer_id = c.id
    LEFT JOIN funding f ON f.customer_id = c.id
    LEFT JOIN position_sums s ON s.customer_id = c.id
    WHERE c.created_at < %(end)s OR p.customer_id IS NOT NULL OR w.customer_id IS NOT NULL
        OR f.customer_id IS NOT NULL
    ON CONFLICT (customer_id, date) DO UPDATE SET
        provisional = EXCLUDED.provisional, nr_trades = EXCLUDED.nr_trades,
        buy_notional = EXCLUDED.buy_notional, sell_notional = EXCLUDED.sell_notional,
        commission_paid = EXCLUDED.commission_paid, total_nr_trades = EXCLUDED.total_nr_trades,
        total_commission_paid = EXCLUDED.total_commission_paid,
        total_amount_invested = EXCLUDED.total_amount_invested, remaining_fund = EXCLUDED.remaining_fund,
        market_value = EXCLUDED.market_value, trade_pnl = EXCLUDED.trade_pnl,
        position_pnl = EXCLUDED.position_pnl, total_pnl = EXCLUDED.total_pnl, updated = EXCLUDED.updated
    RETURNING 1
), ticker_trades AS (
    SELECT t.ticker_id, COUNT(*) AS nr, SUM(t.quantity) AS volume, SUM(t.notional) AS notional,
           SUM(t.quantity * t.price) AS value,
           (array_agg(t.price ORDER BY t.trade_date, t.id))[1] AS open,
           MAX(t.price) AS high, MIN(t.price) AS low,
           (array_agg(t.price ORDER BY t.trade_date DESC, t.id DESC))[1] AS last,
           COALESCE(SUM(t.quantity) FILTER (WHERE t.direction = 'Buy'), 0) AS buy_volume,
           COALESCE(SUM(t.quantity) FILTER (WHERE t.direction = 'Sell'), 0) AS sell_volume,
           COALESCE(SUM(t.quantity) FILTER (WHERE v.kind = 'Lit'), 0) AS lit_volume,
           COALESCE(SUM(t.quantity) FILTER (WHERE v.kind <> 'Lit'), 0) AS dark_volume,
           SUM(t.fee) AS fees
    FROM trades t JOIN pools_pool v ON v.id = t.pool_id
    WHERE t.today
    GROUP BY t.ticker_id
), tickers AS (
    INSERT INTO reporting_tickerday (
        ticker_id, date, provisional, nr_trades, volume, notional, vwap, open, high, low, last,
        buy_volume, sell_volume, lit_volume, dark_volume, fees, close, close_date, updated
    )
    SELECT d.ticker_id, %(day)s, %(provisional)s, d.nr, d.volume, d.notional,
           round(d.value / d.volume, 4), d.open, d.high, d.low, d.last,
           d.buy_volume, d.sell_volume, d.lit_volume, d.dark_volume, d.fees, c.close, c.close_date, %(stamp)s
    FROM ticker_trades d
    LEFT JOIN closes c ON c.ticker_id = d.ticker_id
    ON CONFLICT (ticker_id, date) DO UPDATE SET
        provisional = EXCLUDED.provisional, nr_trades = EXCLUDED.nr_trades, volume = EXCLUDED.volume,
        notional = EXCLUDED.notional, vwap = EXCLUDED.vwap, open = EXCLUDED.open, high = EXCLUDED.high,
        low = EXCLUDED.low, last = EXCLUDED.last, buy_volume = EXCLUDED.buy_volume,
        sell_volume = EXCLUDED.sell_volume, lit_volume = EXCLUDED.lit_volume,
        dark_volume = EXCLUDED.dark_volume, fees = EXCLUDED.fees, close = EXCLUDED.close,
        close_date = EXCLUDED.close_date, updated = EXCLUDED.updated
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM positions), (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM tickers)
"""  # noqa: S608 - module constants only

# Rows of the day the statement above did not write: keys with nothing left (a busted trade was their
# only one). Every row it wrote carries the call's own `updated` stamp.
_STALE = "DELETE FROM {table} WHERE date = %(day)s AND updated <> %(stamp)s"


def _previous_day(day: date) -> tuple[date, bool] | None:
    """The latest day before `day` with stored rows (its close is where `day` starts from), and whether
    any of them is provisional (a day's rows are all written with the same flag)."""
    return (
        CustomerDay.objects.filter(date__lt=day)
        .order_by("-date", "-provisional")
        .values_list("date", "provisional")
        .first()
    )


def _lock() -> None:
    """One aggregation at a time, to the end of the transaction: days build on each other."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AGGREGATION_LOCK])


def _day_compute(day: date) -> DayResult:
    """`day_aggregate`'s work; the caller holds the aggregation lock in an open transaction."""
    found = _previous_day(day)
    previous = found[0] if found else None
    if found and found[1]:
        # A savepoint inside the caller's transaction, under the same lock.
        with transaction.atomic():
            _day_compute(found[0])
    end = day_start(day + timedelta(days=1))
    # Every row this call writes carries its own stamp, even twice in one transaction.
    stamp = timezone.now()
    provisional = stamp < end
    params: dict[str, date | datetime | bool | None] = {
        "day": day,
        "previous_day": day - timedelta(days=1),
        "prev": previous,
        "start": day_start(day),
        "end": end,
        "since": day_start(previous + timedelta(days=1)) if previous else BEGINNING,
        "provisional": provisional,
        "stamp": stamp,
    }
    # Prepared: the same statement runs for every day of a rebuild, and planning it is a tenth of its cost.
    ((positions, customers, tickers),) = execute_prepared(DAY_SQL, params)
    with script_cursor() as cursor:
        # One round trip for the three tables' leftovers (client-side binding sends it as one text).
        tables = (PositionSnapshot, CustomerDay, TickerDay)
        cursor.execute("; ".join(_STALE.format(table=model._meta.db_table) for model in tables), params)
    return DayResult(day, provisional, positions, customers, tickers)


def day_aggregate(day: date) -> DayResult:
    """Compute (or recompute) every row of `day`. Idempotent; rows computed before the day ended say
    `provisional`. A provisional previous day is recomputed first: the day carries its totals forward."""
    with transaction.atomic():
        _lock()
        return _day_compute(day)


# Days per transaction when many are aggregated in a row: the lock and the commit are paid once per
# batch rather than per day, while an interrupted rebuild keeps every batch it committed and holds
# the lock (which the nightly job and corrections wait for) for a few seconds at a time at most.
DAYS_PER_TRANSACTION = 20


def days_aggregate(days: Iterable[date], *, progress: Callable[[int, int, date], None] | None = None) -> int:
    """Aggregate each day in date order (each day starts from the one before). Returns how many."""
    ordered = sorted(set(days))
    for first in range(0, len(ordered), DAYS_PER_TRANSACTION):
        with transaction.atomic():
            _lock()
            for number, day in enumerate(ordered[first : first + DAYS_PER_TRANSACTION], start=first + 1):
                _day_compute(day)
                if progress:
                    progress(number, len(ordered), day)
    return len(ordered)


# Days a read computes when they are missing or provisional: a request does at most this many.
ON_DEMAND_DAYS = 7


def days_ensure(days: Iterable[date]) -> int:
    """Compute the days among `days` that have no stored rows or only provisional ones (computed
    before the day ended: trades may have come since): the newest `ON_DEMAND_DAYS` of them, in date
    order (each builds on the stored day before it). Returns how many were computed."""
    wanted = set(days)
    stored = dict(
        CustomerDay.objects.filter(date__in=wanted)
        .values_list("date")
        .annotate(provisional=BoolOr("provisional"))
        .values_list("date", "provisional")
    )
    due = sorted(day for day in wanted if stored.get(day, True))
    return days_aggregate(due[-ON_DEMAND_DAYS:]) if due else 0


def days_to_report(first: date, last: date) -> list[date]:
    """Every XNYS session from `first` to `last`, plus every other day with trades (the simulation
    trades around the clock)."""
    import exchange_calendars

    calendar = exchange_calendars.get_calendar("XNYS", start=min(first, last) - timedelta(days=7))
    sessions = {session.date() for session in calendar.sessions_in_range(first, last)} if first <= last else set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT DISTINCT (t.trade_date AT TIME ZONE 'America/New_York')::date FROM {_TRADES} t
                WHERE t.trade_date >= %s AND t.trade_date < %s""",  # noqa: S608 - constants only
            [day_start(first), day_start(last + timedelta(days=1))],
        )
        traded = {row[0] for row in cursor.fetchall()}
    return sorted(sessions | traded)


def first_trade_day() -> date | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(trade_date) FROM {_TRADES}")  # noqa: S608 - a constant
        (first,) = cursor.fetchone()
    return trading_day(first) if first else None


def stored_days_from(day: date) -> list[date]:
    return list(CustomerDay.objects.filter(date__gte=day).values_list("date", flat=True).distinct().order_by("date"))


def days_after_correction(day: date) -> int:
    """A trade of `day` changed: that day and every stored day after it carry it forward."""
    return days_aggregate([day, *stored_days_from(day)])
