"""Monthly statements: a customer's month as JSON or as a PDF.

A statement covers one calendar month in New York time, as the books stand when it is issued:
- `openingCash` / `closingCash`: cash on the trade-date basis (settled plus unsettled) at the month's
  start and end, as `reporting.valuation` computes it. Every activity of the month is listed
  (`orders.activities`), so `openingCash` + the sum of their `netAmount`s = `closingCash`, and each
  symbol's opening quantity + its activities' `quantity`s = its closing quantity (tests check both).
- `positions`: the month-end holdings valued at the month-end close (the ticker's last daily bar on or
  before the month's last day); `openingPositions` the same at the previous month's end.
- `fees`: what the month's trades and corrections cost in fees (the fees of every trade as it stood at
  the end less the same at the start: a correction of an older trade's fee counts in its month).
- `realizedPnl`: average cost, on the trade-date basis: the P&L the month's sells realized against the
  average cost of the shares held (transfers in and journals at their unit cost), with later corrections
  applied as they stood at the month's end. Per symbol in `realized`. The Positions screen's realized
  P&L is the ledger's (settled trades only); once everything has settled, their sums agree.

The current month is provisional (`final: false`): it runs to the moment of issue, and its positions are
valued at the last close so far. A month that has not begun is refused (400).
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.sax.saxutils import escape

from django.db import connection
from django.utils import timezone

from broker.models import Customer
from orders import activities
from orders.api.serializers import format_amount, format_price, format_time
from reporting.aggregation import day_start
from reporting.valuation import Portfolio, portfolio_at

CENT = Decimal("0.01")
ZERO = Decimal("0")
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Month:
    first: date  # the month's first day

    @property
    def label(self) -> str:
        return f"{self.first:%Y-%m}"

    @property
    def next_first(self) -> date:
        return (self.first.replace(day=28) + timedelta(days=4)).replace(day=1)

    @property
    def start(self) -> datetime:
        return day_start(self.first)

    @property
    def end(self) -> datetime:
        return day_start(self.next_first)


# The customer's trades as each stood at %(as_of)s, as reporting.valuation reads a trade's state: a
# version changed after it is replaced by its earlier row; a trade busted by then is left out.
_AS_STOOD = """
WITH stood AS (
    SELECT t.id, t.trade_date, t.ticker_id, t.direction,
           COALESCE(v.quantity, t.quantity) AS quantity, COALESCE(v.price, t.price) AS price,
           COALESCE(v.fee, t.fee) AS fee
    FROM orders_trade t
    LEFT JOIN LATERAL (
        SELECT tv.quantity, tv.price, tv.fee FROM orders_tradeversion tv
        WHERE tv.trade_id = t.id AND tv.changed_at > %(as_of)s ORDER BY tv.version LIMIT 1
    ) v ON true
    WHERE t.customer_id = %(customer)s AND t.trade_date <= %(as_of)s AND (v.quantity IS NOT NULL OR NOT t.busted)
)
"""

_FEES_SQL = _AS_STOOD + "SELECT COALESCE(SUM(fee), 0) FROM stood"  # noqa: S608 - module constants only

# Every share movement up to %(as_of)s in time order: trades as they stood then (with their notional
# rounded as the ledger posts it), and the ledger's transfers in and journals at their unit cost.
_MOVES_SQL = (
    _AS_STOOD  # noqa: S608 - module constants only
    + """
SELECT * FROM (
    SELECT s.trade_date AS at, 0 AS source, s.id, k.symbol,
           CASE WHEN s.direction = 'Buy' THEN 1 ELSE -1 END * s.quantity AS shares,
           round(s.quantity * s.price, 2) AS amount
    FROM stood s
    JOIN broker_ticker k ON k.id = s.ticker_id
    UNION ALL
    SELECT e.created_at, 1, e.id, a.asset, e.amount, abs(e.amount) * COALESCE(p.unit_cost, 0)
    FROM settlement_ledgerentry e
    JOIN settlement_account a ON a.id = e.account_id AND a.customer_id = %(customer)s
         AND a.kind = 'CustomerSecurities'
    JOIN settlement_posting p ON p.id = e.posting_id
    WHERE e.purpose IN ('TransferIn', 'Journal') AND e.created_at <= %(as_of)s
) moves
ORDER BY at, source, id
"""
)


def realized_at(*, customer_pk: int, as_of: datetime) -> dict[str, Decimal]:
    """Realized P&L per symbol over the customer's history up to `as_of` (average cost; fees apart)."""
    with connection.cursor() as cursor:
        cursor.execute(_MOVES_SQL, {"customer": customer_pk, "as_of": as_of})
        moves = cursor.fetchall()
    quantity: dict[str, Decimal] = defaultdict(Decimal)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    realized: dict[str, Decimal] = defaultdict(Decimal)
    for _, source, _, symbol, shares, amount in moves:
        shares = Decimal(shares)
        if shares > 0:  # bought, transferred or journaled in: at what it cost
            cost[symbol] += amount
        else:
            out = -shares
            held = quantity[symbol]
            average = cost[symbol] / held if held > 0 else (amount / out if out else ZERO)
            if source == 0:  # a sell realizes its proceeds against the average cost
                realized[symbol] += amount - average * out
            # a journal out leaves at the average cost: nothing realized
            cost[symbol] -= average * out
        quantity[symbol] += shares
    return dict(realized)


def _fees_at(*, customer_pk: int, as_of: datetime) -> Decimal:
    with connection.cursor() as cursor:
        cursor.execute(_FEES_SQL, {"customer": customer_pk, "as_of": as_of})
        (total,) = cursor.fetchone()
    return Decimal(total)


def _month_activities(*, customer_pk: int, month: Month, until: datetime) -> list[dict[str, Any]]:
    """Every activity of the month up to `until`, page by page."""
    rows: list[dict[str, Any]] = []
    since_id = None
    while True:
        page = activities.activities_list(
            activities.Query(
                customer_pk=customer_pk,
                since_id=since_id,
                period=(month.start, min(month.end, until + MICROSECOND)),
                page_size=activities.MAX_PAGE_SIZE,
                below_horizon=False,
            )
        )
        rows += page
        if len(page) < activities.MAX_PAGE_SIZE:
            return rows
        since_id = page[-1]["activityId"]


def _positions(portfolio: Portfolio) -> list[dict[str, Any]]:
    return [
        {
            "symbol": position.ticker,
            "quantity": position.quantity,
            "close": format_price(position.close),
            "closeDate": position.close_date.isoformat() if position.close_date else None,
            "marketValue": format_amount(position.market_value),
        }
        for position in portfolio.positions
    ]


def monthly_statement(*, customer: Customer, month: Month) -> dict[str, Any]:
    """The statement of `customer` for `month` as the books stand now (the month must have begun)."""
    now = timezone.now()
    final = month.end <= now
    opened_at = month.start - MICROSECOND
    closed_at = month.end - MICROSECOND if final else now
    last_day = month.next_first - timedelta(days=1) if final else timezone.localtime(now, activities.MARKET_TZ).date()
    opening = portfolio_at(customer_id=customer.pk, day=month.first - timedelta(days=1), as_of=opened_at)
    closing = portfolio_at(customer_id=customer.pk, day=last_day, as_of=closed_at)
    realized_before = realized_at(customer_pk=customer.pk, as_of=opened_at)
    realized_after = realized_at(customer_pk=customer.pk, as_of=closed_at)
    realized = {
        symbol: (realized_after.get(symbol, ZERO) - realized_before.get(symbol, ZERO)).quantize(
            CENT, rounding=ROUND_HALF_UP
        )
        for symbol in sorted(realized_before.keys() | realized_after.keys())
    }
    realized = {symbol: amount for symbol, amount in realized.items() if amount}
    fees = _fees_at(customer_pk=customer.pk, as_of=closed_at) - _fees_at(customer_pk=customer.pk, as_of=opened_at)
    rows = _month_activities(customer_pk=customer.pk, month=month, until=closed_at)
    return {
        "customerId": customer.customer_id,
        "name": customer.name,
        "month": month.label,
        "periodStart": format_time(month.start),
        "periodEnd": format_time(month.end if final else now),
        "final": final,
        "issuedAt": format_time(now),
        "openingCash": format_amount(opening.cash),
        "closingCash": format_amount(closing.cash),
        "openingValue": format_amount(opening.total_value),
        "closingValue": format_amount(closing.total_value),
        "fees": format_amount(fees),
        "realizedPnl": format_amount(sum(realized.values(), start=ZERO)),
        "realized": [{"symbol": symbol, "realizedPnl": format_amount(amount)} for symbol, amount in realized.items()],
        "tradeCount": sum(1 for row in rows if row["type"] == "FILL"),
        "openingPositions": _positions(opening),
        "positions": _positions(closing),
        "activities": rows,
    }


def statement_pdf(statement: dict[str, Any]) -> bytes:
    """The statement on A4 pages: summary, positions, realized P&L, then every activity."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    title = f"Statement {statement['month']} - customer {statement['customerId']}"
    document = SimpleDocTemplate(buffer, pagesize=A4, title=title, author="Broker back office")

    def table(rows: list[list[Any]], *, header: bool = False, numeric: tuple[int, int] = (99, 99)) -> Table:
        grid = Table(
            [[str("" if cell is None else cell) for cell in row] for row in rows],
            hAlign="LEFT",
            repeatRows=1 if header else 0,
        )
        style = [
            ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("ALIGN", (numeric[0], 0), (numeric[1], -1), "RIGHT"),
        ]
        style.append(
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8) if header else ("FONT", (0, 0), (0, -1), "Helvetica-Bold", 8)
        )
        grid.setStyle(TableStyle(style))
        return grid

    status = "final" if statement["final"] else f"provisional, to {statement['periodEnd']}"
    story: list[Any] = [
        Paragraph(f"Monthly statement {statement['month']}", styles["Title"]),
        Paragraph(
            f"Customer {statement['customerId']} {escape(statement['name'])} - {status} - "
            f"issued {statement['issuedAt']}",
            styles["Normal"],
        ),
        Spacer(1, 10),
        table(
            [
                ["Opening cash", statement["openingCash"]],
                ["Closing cash", statement["closingCash"]],
                ["Opening value (cash and positions)", statement["openingValue"]],
                ["Closing value (cash and positions)", statement["closingValue"]],
                ["Trades", statement["tradeCount"]],
                ["Fees", statement["fees"]],
                ["Realized P&L", statement["realizedPnl"]],
            ],
            numeric=(1, -1),
        ),
        Spacer(1, 10),
        Paragraph("Positions at month end", styles["Heading2"]),
    ]
    if statement["positions"]:
        story.append(
            table(
                [
                    ["Symbol", "Quantity", "Close", "Close date", "Market value"],
                    *(
                        [
                            row["symbol"],
                            row["quantity"],
                            row["close"] or "-",
                            row["closeDate"] or "-",
                            row["marketValue"],
                        ]
                        for row in statement["positions"]
                    ),
                ],
                header=True,
                numeric=(1, -1),
            )
        )
    else:
        story.append(Paragraph("No positions.", styles["Normal"]))
    if statement["realized"]:
        story += [Spacer(1, 10), Paragraph("Realized P&amp;L by symbol", styles["Heading2"])]
        story.append(
            table(
                [["Symbol", "Realized P&L"], *([row["symbol"], row["realizedPnl"]] for row in statement["realized"])],
                header=True,
                numeric=(1, -1),
            )
        )
    story += [Spacer(1, 10), Paragraph("Activities", styles["Heading2"])]
    if statement["activities"]:
        story.append(
            table(
                [
                    ["Date (UTC)", "Type", "Symbol", "Quantity", "Net amount", "Details"],
                    *(
                        [
                            row["date"][:19].replace("T", " "),
                            row["type"],
                            row["symbol"] or "",
                            row["quantity"] or "",
                            row["netAmount"],
                            activity_details(row),
                        ]
                        for row in statement["activities"]
                    ),
                ],
                header=True,
                numeric=(3, 4),
            )
        )
    else:
        story.append(Paragraph("No movements this month.", styles["Normal"]))
    document.build(story)
    return buffer.getvalue()


def activity_details(row: dict[str, Any]) -> str:
    """One line for a reader: the trade's side and size, or the movement's reason and counterparty."""
    parts: list[str] = []
    if row["type"] == "FEE":
        parts.append(f"fee of the {row['side'].lower()}")
    elif row.get("tradeId"):
        size = f"{row['side']} {row.get('tradeQuantity') or ''}".strip()
        if row.get("price"):
            size += f" @ {row['price']}"
        parts.append(size)
        if row.get("replacesVersion"):
            parts.append(f"replaces v{row['replacesVersion']}")
        if row.get("settledAmount"):
            parts.append(f"settled {row['settledAmount']}")
    if row.get("counterpartyId"):
        parts.append(f"with {row['counterpartyId']}")
    text = row.get("reason") or row.get("description")
    if text:
        parts.append(str(text))
    return ", ".join(parts)[:90]
