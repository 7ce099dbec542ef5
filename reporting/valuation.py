"""A customer's portfolio at a day's close, as the books stood at a moment: one set-based query.

Unlike the stored reports (`reporting.aggregation`), a valuation is computed from scratch on every call,
so it can answer "as the books stood at T": corrections and busts recorded after T are not applied.

- cash: the customer's cash ledger entries that are not trade postings (funding, deposits), posted
  before the end of the day and by T, plus every trade of the customer made before the end of the day
  and by T: a buy moves -(notional + fee), a sell +(notional - fee), notional rounded half-up to the cent
  as the ledger posts it (the same expressions as the aggregation);
- quantities: the customer's securities ledger entries that are not trade postings (transfers in), plus
  the signed quantities of the same trades;
- a trade's state at T: its earliest `orders_tradeversion` row changed after T holds the version that was
  current at T (a version row is never a busted one: a busted trade cannot be corrected again); with no
  such row the trade row itself, busted or not, is how it stood at T;
- close of a ticker at the day: its last daily bar on or before it (`close_date` says which); a position
  with no bar at all is valued at 0, as the aggregation does;
- total value: cash + the sum of quantity x close, rounded half-up to the cent once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection

from reporting.aggregation import _CASH, _NOT_TRADE, _SIGNED, _close, day_start

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class ValuedPosition:
    ticker: str
    quantity: int
    close: Decimal | None
    close_date: date | None
    market_value: Decimal


@dataclass(frozen=True, slots=True)
class Portfolio:
    day: date
    as_of: datetime
    cash: Decimal
    positions: list[ValuedPosition]
    total_value: Decimal


# The aggregation's own cash and quantity expressions (alias `t`), so a valuation at a day's close with
# nothing corrected since agrees with that day's stored rows to the cent.
PORTFOLIO_SQL = f"""
WITH t AS (
    SELECT t.ticker_id, t.direction,
           COALESCE(v.quantity, t.quantity) AS quantity,
           COALESCE(v.price, t.price) AS price,
           COALESCE(v.fee, t.fee) AS fee
    FROM orders_trade t
    LEFT JOIN LATERAL (
        SELECT tv.quantity, tv.price, tv.fee FROM orders_tradeversion tv
        WHERE tv.trade_id = t.id AND tv.changed_at > %(as_of)s ORDER BY tv.version LIMIT 1
    ) v ON true
    WHERE t.customer_id = %(customer)s AND t.trade_date < %(end)s AND t.trade_date <= %(as_of)s
      AND (v.quantity IS NOT NULL OR NOT t.busted)
), ledger AS (
    SELECT a.kind, a.asset, SUM(e.amount) AS amount
    FROM settlement_ledgerentry e
    JOIN settlement_account a ON a.id = e.account_id
    WHERE a.customer_id = %(customer)s AND a.kind IN ('CustomerCash', 'CustomerSecurities')
      AND {_NOT_TRADE} AND e.created_at < %(end)s AND e.created_at <= %(as_of)s
    GROUP BY a.kind, a.asset
), cash AS (
    SELECT COALESCE((SELECT SUM(amount) FROM ledger WHERE kind = 'CustomerCash'), 0)
         + COALESCE((SELECT SUM({_CASH}) FROM t), 0) AS amount
), quantities AS (
    SELECT moves.ticker_id, SUM(moves.quantity)::bigint AS quantity
    FROM (
        SELECT t.ticker_id, {_SIGNED} AS quantity FROM t
        UNION ALL
        SELECT k.id, l.amount FROM ledger l JOIN broker_ticker k ON k.symbol = l.asset
        WHERE l.kind = 'CustomerSecurities'
    ) moves
    GROUP BY moves.ticker_id
    HAVING SUM(moves.quantity) <> 0
), valued AS (
    SELECT k.symbol, q.quantity, c.close, c.date AS close_date,
           q.quantity * COALESCE(c.close, 0) AS value
    FROM quantities q
    JOIN broker_ticker k ON k.id = q.ticker_id
    {_close("c", "q.ticker_id", "day")}
)
SELECT cash.amount, COALESCE(round(SUM(v.value) OVER (), 2), 0),
       v.symbol, v.quantity, v.close, v.close_date, round(v.value, 2)
FROM cash LEFT JOIN valued v ON true
ORDER BY v.symbol
"""  # noqa: S608 - module constants only


def portfolio_at(*, customer_id: int, day: date, as_of: datetime) -> Portfolio:
    """The portfolio of the customer (primary key `customer_id`) at `day`'s close in New York, as the
    books stood at `as_of`. Reads only; one query."""
    params: dict[str, int | date | datetime] = {
        "customer": customer_id,
        "day": day,
        "end": day_start(day + timedelta(days=1)),
        "as_of": as_of,
    }
    with connection.cursor() as cursor:
        cursor.execute(PORTFOLIO_SQL, params)
        rows = cursor.fetchall()
    # The cash row comes once, joined to each position (or to none: one row of NULL positions).
    cash, positions_value = rows[0][0], rows[0][1]
    positions = [
        ValuedPosition(ticker=symbol, quantity=quantity, close=close, close_date=close_date, market_value=value)
        for _, _, symbol, quantity, close, close_date, value in rows
        if symbol is not None
    ]
    total_value = (cash + positions_value).quantize(CENT, rounding=ROUND_HALF_UP)
    return Portfolio(day=day, as_of=as_of, cash=cash, positions=positions, total_value=total_value)
