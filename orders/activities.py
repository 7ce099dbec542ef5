"""Account activities: every movement of a customer's cash and shares, one typed entry each, read
straight from the trade history and the ledger (nothing is stored twice, so they always agree).

Types and where each comes from:
- `FILL`: a trade as it was filled (its first version): `netAmount` is -notional for a buy, +notional for
  a sell, `quantity` the shares in (+) or out (-). `FEE`: that fill's fee, when it has one.
- `CORRECTION`: an amend of the trade, version `replacesVersion` -> `version`: what changed (notional and
  fee together, and the quantity). `BUST`: the busted version undone.
- `SETTLEMENT`: the trade's movements reached the ledger (its first settlement posting). It moves
  nothing itself (`netAmount` "0.00"); `settledAmount` and `settledQuantity` say what settled.
- `CSD` / `CSW`: cash deposited (the initial funds too) / withdrawn. `TRANSFER_IN`: shares delivered from
  outside. `JNLC` / `JNLS`: cash / shares journaled between two customers (`counterpartyId`).

A trade's FILL, FEE, CORRECTION and BUST are `settled` once the trade is in the ledger; ledger
movements always are. So, for every customer, the `netAmount`s add up to its cash (settled plus
unsettled), the settled ones to its ledger cash, and the `quantity`s per symbol to its shares
(tests/integration/test_randomized.py checks this after the 2,000-order day).

`activityId` is `<UTC time to the microsecond>-<type code>-<source row id>`: stable, unique, ascending
in time. Listing pages ascend by it (`since_id` / `until_id` are exclusive / inclusive bounds). A
movement's time is taken inside the transaction that writes it, so a cursor could skip one whose
transaction commits after a later one's was read: the list therefore stops at the horizon,
`ACTIVITY_HORIZON_SECONDS` (1) before the oldest transaction still open on the database began. A
movement older than that has committed (or never will), and any later one is newer than it.
Activities are listed once the transactions of their moment are over: a second, normally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection

from orders.api.serializers import format_amount, format_price, format_time

MARKET_TZ = ZoneInfo("America/New_York")
PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

TYPES = {
    "FILL": 1,
    "FEE": 2,
    "CORRECTION": 3,
    "BUST": 4,
    "SETTLEMENT": 5,
    "CSD": 6,
    "CSW": 7,
    "TRANSFER_IN": 8,
    "JNLC": 9,
    "JNLS": 10,
}
ACTIVITY_ID = re.compile(r"^(\d{20})-(\d{2})-(\d{12})$")

# One branch per source; each yields the same columns. %(customer)s is the customer's pk; the time
# bounds are applied in every branch so an index range, not the customer's whole history, is read.
_SQL = """
WITH trade_first AS (
    SELECT t.id, t.trade_id, t.direction, t.trade_date, t.settlement_date, o.order_id, k.symbol, p.name AS venue,
           COALESCE(v.quantity, t.quantity) AS quantity, COALESCE(v.price, t.price) AS price,
           COALESCE(v.fee, t.fee) AS fee
    FROM orders_trade t
    JOIN orders_order o ON o.id = t.order_id
    JOIN broker_ticker k ON k.id = t.ticker_id
    JOIN pools_pool p ON p.id = t.pool_id
    LEFT JOIN orders_tradeversion v ON v.trade_id = t.id AND v.version = 1
    WHERE t.customer_id = %(customer)s AND t.trade_date >= %(start)s AND t.trade_date < %(end)s
), changes AS (
    -- Each replaced version and what replaced it: the next version's row, else the trade as it is now.
    SELECT v.id, v.changed_at, v.change, v.version, t.trade_id, t.direction, t.settlement_date, o.order_id,
           k.symbol, v.quantity AS old_quantity, v.price AS old_price, v.fee AS old_fee,
           COALESCE(n.quantity, t.quantity) AS new_quantity, COALESCE(n.price, t.price) AS new_price,
           COALESCE(n.fee, t.fee) AS new_fee, v.reason
    FROM orders_tradeversion v
    JOIN orders_trade t ON t.id = v.trade_id
    JOIN orders_order o ON o.id = t.order_id
    JOIN broker_ticker k ON k.id = t.ticker_id
    LEFT JOIN orders_tradeversion n ON n.trade_id = v.trade_id AND n.version = v.version + 1
    WHERE t.customer_id = %(customer)s AND v.changed_at >= %(start)s AND v.changed_at < %(end)s
), settlements AS (
    SELECT DISTINCT ON (s.trade_ref) s.id, s.created_at, s.trade_ref, s.trade_version
    FROM settlement_posting s
    WHERE s.customer_id = %(customer)s AND s.purpose = 'TradeSettlement'
    ORDER BY s.trade_ref, s.id
), activities AS (
    SELECT trade_date AS at, 1 AS code, id AS source, 'FILL' AS type,
           CASE WHEN direction = 'Buy' THEN -round(price * quantity, 2) ELSE round(price * quantity, 2) END
               AS net_amount,
           CASE WHEN direction = 'Buy' THEN quantity ELSE -quantity END::numeric AS quantity, symbol,
           settlement_date IS NOT NULL AS settled, trade_id, order_id, 1 AS version, NULL::int AS replaces,
           direction, quantity AS trade_quantity, price, fee, venue, ''::text AS description,
           NULL::text AS counterparty, NULL::numeric AS settled_amount, NULL::numeric AS settled_quantity
    FROM trade_first
    UNION ALL
    SELECT trade_date, 2, id, 'FEE', -fee, NULL, symbol, settlement_date IS NOT NULL, trade_id, order_id, 1, NULL,
           direction, quantity, price, fee, venue, '', NULL, NULL, NULL
    FROM trade_first WHERE fee <> 0
    UNION ALL
    SELECT changed_at, CASE WHEN change = 'Bust' THEN 4 ELSE 3 END, id,
           CASE WHEN change = 'Bust' THEN 'BUST' ELSE 'CORRECTION' END,
           CASE WHEN change = 'Bust'
                THEN (CASE WHEN direction = 'Buy' THEN round(old_price * old_quantity, 2)
                           ELSE -round(old_price * old_quantity, 2) END) + old_fee
                ELSE (CASE WHEN direction = 'Buy'
                           THEN round(old_price * old_quantity, 2) - round(new_price * new_quantity, 2)
                           ELSE round(new_price * new_quantity, 2) - round(old_price * old_quantity, 2) END)
                     - (new_fee - old_fee) END,
           (CASE WHEN direction = 'Buy' THEN 1 ELSE -1 END)
               * (CASE WHEN change = 'Bust' THEN -old_quantity ELSE new_quantity - old_quantity END)::numeric,
           symbol, settlement_date IS NOT NULL, trade_id, order_id,
           CASE WHEN change = 'Bust' THEN NULL ELSE version + 1 END, version,
           direction, CASE WHEN change = 'Bust' THEN NULL ELSE new_quantity END,
           CASE WHEN change = 'Bust' THEN NULL ELSE new_price END,
           CASE WHEN change = 'Bust' THEN NULL ELSE new_fee END, NULL, reason, NULL, NULL, NULL
    FROM changes
    UNION ALL
    SELECT s.created_at, 5, s.id, 'SETTLEMENT', 0,
           NULL, k.symbol, true, t.trade_id, o.order_id, s.trade_version, NULL,
           t.direction, NULL, NULL, NULL, NULL, '', NULL,
           (SELECT COALESCE(SUM(e.amount), 0) FROM settlement_ledgerentry e
             JOIN settlement_account a ON a.id = e.account_id AND a.kind = 'CustomerCash'
             WHERE e.posting_id = s.id),
           (SELECT COALESCE(SUM(e.amount), 0) FROM settlement_ledgerentry e
             JOIN settlement_account a ON a.id = e.account_id AND a.kind = 'CustomerSecurities'
             WHERE e.posting_id = s.id)
    FROM settlements s
    JOIN orders_trade t ON t.id = s.trade_ref
    JOIN orders_order o ON o.id = t.order_id
    JOIN broker_ticker k ON k.id = t.ticker_id
    WHERE s.created_at >= %(start)s AND s.created_at < %(end)s
    UNION ALL
    SELECT e.created_at,
           CASE WHEN p.purpose = 'CashWithdrawal' THEN 7 WHEN p.purpose = 'TransferIn' THEN 8
                WHEN p.purpose = 'Journal' AND a.kind = 'CustomerCash' THEN 9
                WHEN p.purpose = 'Journal' THEN 10 ELSE 6 END,
           e.id,
           CASE WHEN p.purpose = 'CashWithdrawal' THEN 'CSW' WHEN p.purpose = 'TransferIn' THEN 'TRANSFER_IN'
                WHEN p.purpose = 'Journal' AND a.kind = 'CustomerCash' THEN 'JNLC'
                WHEN p.purpose = 'Journal' THEN 'JNLS' ELSE 'CSD' END,
           CASE WHEN a.kind = 'CustomerCash' THEN e.amount ELSE 0 END,
           CASE WHEN a.kind = 'CustomerCash' THEN NULL ELSE e.amount END,
           CASE WHEN a.kind = 'CustomerCash' THEN NULL ELSE a.asset END,
           true, NULL, NULL, NULL, NULL, NULL, NULL, p.unit_cost, NULL, NULL, p.description,
           (SELECT c.customer_id FROM broker_customer c
             WHERE c.id = CASE WHEN p.customer_id = %(customer)s THEN p.counterparty_id ELSE p.customer_id END
               AND p.purpose = 'Journal'),
           NULL, NULL
    FROM settlement_ledgerentry e
    JOIN settlement_account a ON a.id = e.account_id AND a.customer_id = %(customer)s
         AND a.kind IN ('CustomerCash', 'CustomerSecurities')
    JOIN settlement_posting p ON p.id = e.posting_id
    WHERE e.purpose IN ('InitialFunding', 'CashDeposit', 'CashWithdrawal', 'TransferIn', 'Journal')
      AND e.created_at >= %(start)s AND e.created_at < %(end)s
)
SELECT to_char(at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '-' || lpad(code::text, 2, '0') || '-'
           || lpad(source::text, 12, '0') AS activity_id, *
FROM activities
WHERE code = ANY(%(codes)s)
  AND to_char(at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '-' || lpad(code::text, 2, '0') || '-'
      || lpad(source::text, 12, '0') > %(after)s
  AND to_char(at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '-' || lpad(code::text, 2, '0') || '-'
      || lpad(source::text, 12, '0') <= %(until)s
ORDER BY activity_id
LIMIT %(limit)s
"""

_HORIZON_SQL = """
SELECT LEAST(clock_timestamp(), COALESCE(
    (SELECT min(xact_start) FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL),
    clock_timestamp()))
"""


@dataclass(frozen=True)
class Query:
    """What the caller asked for; every field already validated (orders.api.activities)."""

    customer_pk: int
    types: tuple[str, ...] = tuple(TYPES)
    since_id: str | None = None
    until_id: str | None = None
    day: date | None = None
    # (start, end): only activities at or after start and before end (a statement's month).
    period: tuple[datetime, datetime] | None = None
    page_size: int = PAGE_SIZE
    # False: up to now, for a screen that shows a day rather than a cursor that must never skip one.
    below_horizon: bool = True


def activity_time(activity_id: str) -> datetime:
    """The UTC time an activityId starts with (the id must match ACTIVITY_ID)."""
    return datetime.strptime(activity_id[:20], "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)


def horizon() -> datetime:
    """Activities before this time are all committed, and no later transaction can add one before it."""
    with connection.cursor() as cursor:
        cursor.execute(_HORIZON_SQL)
        (oldest,) = cursor.fetchone()
    return oldest - timedelta(seconds=settings.ACTIVITY_HORIZON_SECONDS)


def activities_list(query: Query) -> list[dict[str, Any]]:
    """One page of the customer's activities, ascending by activityId, as API dicts."""
    end = horizon() if query.below_horizon else datetime.now(UTC) + timedelta(seconds=1)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    if query.day is not None:
        day_start = datetime.combine(query.day, time(0), tzinfo=MARKET_TZ)
        start = max(start, day_start)
        end = min(end, datetime.combine(query.day + timedelta(days=1), time(0), tzinfo=MARKET_TZ))
    if query.period is not None:
        start, end = max(start, query.period[0]), min(end, query.period[1])
    if query.since_id is not None:
        start = max(start, activity_time(query.since_id))
    if query.until_id is not None:
        end = min(end, activity_time(query.until_id) + timedelta(microseconds=1))
    if end <= start:
        return []
    params: dict[str, Any] = {
        "customer": query.customer_pk,
        "start": start,
        "end": end,
        "codes": [TYPES[name] for name in query.types],
        "after": query.since_id or "",
        "until": query.until_id or "9" * 20,
        "limit": query.page_size,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SQL, params)
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return [_output(row) for row in rows]


def _output(row: dict[str, Any]) -> dict[str, Any]:
    kind = row["type"]
    out: dict[str, Any] = {
        "activityId": row["activity_id"],
        "type": kind,
        "date": format_time(row["at"]),
        "netAmount": format_amount(row["net_amount"]),
        "quantity": _shares(row["quantity"]),
        "symbol": row["symbol"],
        "settled": row["settled"],
    }
    if kind in ("FILL", "FEE", "CORRECTION", "BUST", "SETTLEMENT"):
        out["tradeId"] = str(row["trade_id"])
        out["orderId"] = str(row["order_id"])
        out["side"] = row["direction"]
    if kind == "FILL":
        out.update(price=format_price(row["price"]), tradeQuantity=row["trade_quantity"], venue=row["venue"], version=1)
    elif kind == "FEE":
        out["fee"] = format_amount(row["fee"])
    elif kind == "CORRECTION":
        out.update(
            version=row["version"],
            replacesVersion=row["replaces"],
            price=format_price(row["price"]),
            tradeQuantity=row["trade_quantity"],
            fee=format_amount(row["fee"]),
            reason=row["description"],
        )
    elif kind == "BUST":
        out.update(replacesVersion=row["replaces"], reason=row["description"])
    elif kind == "SETTLEMENT":
        out.update(
            version=row["version"],
            settledAmount=format_amount(row["settled_amount"]),
            settledQuantity=_shares(row["settled_quantity"]),
        )
    else:
        out["description"] = row["description"]
        if kind in ("JNLC", "JNLS"):
            out["counterpartyId"] = row["counterparty"]
        if kind in ("TRANSFER_IN", "JNLS") and row["price"] is not None:
            out["unitCost"] = format_price(row["price"])
    return out


def _shares(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"
