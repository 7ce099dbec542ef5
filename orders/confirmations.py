"""Trade confirmations: what the broker tells a client about one fill, as JSON or as a one-page PDF.

The confirmation states the trade as it stands now (its current version, or that it was busted) and
every earlier version with who changed it, when and why; the order it belongs to; and the money: the
notional (quantity x price, rounded half-up to the cent, as the ledger posts it), the fee and the net
amount, signed from the customer's cash (a buy is a debit: negative). Money and prices are decimal
strings, as everywhere in the API.
"""

from __future__ import annotations

import io
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.sax.saxutils import escape

from django.utils import timezone

from orders.api.serializers import format_amount, format_price, format_time
from orders.models import Trade

CENT = Decimal("0.01")


def trade_confirmation(*, trade: Trade) -> dict[str, Any]:
    """The confirmation of `trade` (loaded with its customer, ticker, pool, order and versions)."""
    notional = (trade.quantity * trade.price).quantize(CENT, rounding=ROUND_HALF_UP)
    buy = trade.direction == "Buy"
    net = -(notional + trade.fee) if buy else notional - trade.fee
    order = trade.order
    return {
        "tradeId": str(trade.trade_id),
        "issuedAt": format_time(timezone.now()),
        "customer": {"customerId": trade.customer.customer_id, "name": trade.customer.name},
        "trade": {
            "status": "Busted" if trade.busted else "Active",
            "version": trade.version,
            "side": trade.direction,
            "ticker": trade.ticker.symbol,
            "quantity": trade.quantity,
            "price": format_price(trade.price),
            "venue": trade.pool.name,
            "exchangeType": trade.pool.exchange_type,
            "liquidity": trade.liquidity,
            "notional": format_amount(notional),
            "fee": format_amount(trade.fee),
            "netAmount": format_amount(net),
            "tradeDate": format_time(trade.trade_date),
            "settlesOn": trade.settles_on.isoformat() if trade.settles_on else None,
            "settlementDate": format_time(trade.settlement_date),
        },
        "order": {
            "orderId": str(order.order_id),
            "type": order.order_type,
            "timeInForce": order.time_in_force,
            "limitPrice": format_price(order.price),
            "quantity": order.quantity,
            "filledQuantity": order.filled_quantity,
            "status": order.status,
            "orderDate": format_time(order.created_at),
        },
        "corrections": [
            {
                "version": version.version,
                "quantity": version.quantity,
                "price": format_price(version.price),
                "fee": format_amount(version.fee),
                "change": version.change,
                "reason": version.reason,
                "changedBy": version.changed_by,
                "changedAt": format_time(version.changed_at),
            }
            for version in trade.versions.all()
        ],
    }


def confirmation_pdf(confirmation: dict[str, Any]) -> bytes:
    """One A4 page: the confirmation's figures as text a reader (and pdftotext) finds."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, title=f"Trade confirmation {confirmation['tradeId']}", author="Broker back office"
    )
    trade, order, customer = confirmation["trade"], confirmation["order"], confirmation["customer"]

    def table(rows: list[list[Any]]) -> Table:
        grid = Table([[str("" if cell is None else cell) for cell in row] for row in rows], hAlign="LEFT")
        grid.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
                    ("FONT", (0, 0), (0, -1), "Helvetica-Bold", 9),
                    ("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return grid

    story: list[Any] = [
        Paragraph("Trade confirmation", styles["Title"]),
        Paragraph(
            f"Customer {customer['customerId']} {escape(customer['name'])} - trade {confirmation['tradeId']} - "
            f"issued {confirmation['issuedAt']}",
            styles["Normal"],
        ),
        Spacer(1, 12),
        table(
            [
                ["Status", f"{trade['status']} (version {trade['version']})"],
                ["Side", trade["side"]],
                ["Ticker", trade["ticker"]],
                ["Quantity", trade["quantity"]],
                ["Price", trade["price"]],
                ["Venue", f"{trade['venue']} ({trade['exchangeType']}), {trade['liquidity']}"],
                ["Notional", trade["notional"]],
                ["Fee", trade["fee"]],
                ["Net amount", trade["netAmount"]],
                ["Trade date", trade["tradeDate"]],
                ["Settles on", trade["settlesOn"]],
                ["Settled", trade["settlementDate"] or "not yet"],
            ]
        ),
        Spacer(1, 12),
        Paragraph("Order", styles["Heading2"]),
        table(
            [
                ["Order id", order["orderId"]],
                ["Type", f"{order['type']} {order['timeInForce']}"],
                ["Limit price", order["limitPrice"] or "-"],
                ["Quantity", f"{order['filledQuantity']} filled of {order['quantity']}"],
                ["Status", order["status"]],
                ["Entered", order["orderDate"]],
            ]
        ),
        Spacer(1, 12),
        Paragraph("Corrections", styles["Heading2"]),
    ]
    corrections = confirmation["corrections"]
    if corrections:
        header = ["Version", "Quantity", "Price", "Fee", "Change", "Reason", "By", "When"]
        keys = ["version", "quantity", "price", "fee", "change", "reason", "changedBy", "changedAt"]
        story.append(table([header, *([correction[key] for key in keys] for correction in corrections)]))
    else:
        story.append(Paragraph("None: the trade stands as executed.", styles["Normal"]))
    document.build(story)
    return buffer.getvalue()
