"""Validation of an order request, shared by the REST API and the staff order ticket.

Field names are the API's (camelCase), so every error names exactly what the client sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django.conf import settings
from django.db import connection

from broker.access import customer_for_user
from broker.exceptions import ApplicationError, Forbidden, ValidationFailed
from broker.models import Customer, Ticker
from broker.roles import ENTER_ORDER
from broker.text import Text, text_problems
from orders.models import Direction, Order, OrderType, TimeInForce, TradeVersion

ORDER_FIELDS = ("customerId", "direction", "ticker", "type", "quantity", "price", "timeInForce", "clientOrderId")
REQUIRED_FIELDS = ("customerId", "direction", "ticker", "type", "quantity")
MAX_PRICE = Decimal("1000000")
# Matched with fullmatch: `$` would also accept a trailing newline.
CUSTOMER_ID = re.compile(r"\d{6}", re.ASCII)
TICKER = re.compile(r"[A-Z][A-Z0-9.\-]{0,11}")
CLIENT_ORDER_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
PRICE_TEXT = Text(max_length=20)
CORRECTION_REASON_TEXT = Text.of(TradeVersion, "reason")
# Every string of an order request: bounded and one line before any other check sees it.
ORDER_TEXT = {
    "customerId": Text.of(Customer, "customer_id"),
    "direction": Text.of(Order, "direction"),
    "ticker": Text.of(Ticker, "symbol"),
    "type": Text.of(Order, "order_type"),
    "price": PRICE_TEXT,
    "timeInForce": Text.of(Order, "time_in_force"),
    "clientOrderId": Text.of(Order, "client_order_id"),
    "quantity": Text(max_length=20),  # a CSV cell or a ticket box sends it as text
}


@dataclass(frozen=True, slots=True)
class OrderRequest:
    customer_id: str
    direction: str
    ticker: str
    order_type: str
    quantity: int
    price: Decimal | None
    time_in_force: str
    client_order_id: str | None

    def fingerprint(self) -> str:
        """Identity of the request for clientOrderId replay: same fields, same fingerprint."""
        fields = asdict(self)
        fields.pop("client_order_id")
        fields["price"] = None if self.price is None else str(self.price.normalize())
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _choice(value: Any, choices: type[Direction] | type[OrderType] | type[TimeInForce]) -> str | None:
    allowed = [choice.value for choice in choices]
    return value if isinstance(value, str) and value in allowed else None


def tick_for(price: Decimal) -> Decimal:
    return Decimal("0.01") if price >= 1 else Decimal("0.0001")


def parse_price(value: Any) -> tuple[Decimal | None, str | None]:
    """A positive decimal on the tick: 0.01 at or above $1, 0.0001 below. Returns (price, error)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None, 'Must be a decimal number, e.g. "161.90".'
    if isinstance(value, str) and (problem := PRICE_TEXT.problem(value)):
        return None, problem
    try:
        price = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        return None, f"'{value}' is not a decimal number."
    if not price.is_finite():
        return None, "Must be a finite decimal number."
    if price <= 0:
        return None, "Must be greater than zero."
    if price > MAX_PRICE:
        return None, f"Must be at most {MAX_PRICE}."
    tick = tick_for(price)
    if price % tick:
        return (
            None,
            f"Must be on the {tick} tick for a price {'at or above' if tick == Decimal('0.01') else 'below'} $1.",
        )
    return price.quantize(Decimal("0.0001")), None


def parse_order_request(data: Any) -> OrderRequest:
    """Validate a raw order request; raise `ValidationFailed` naming every bad field."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": ["Expected a JSON object with the order's fields."]})
    # Every string is bounded and one line before anything else looks at it; a refused one is not
    # looked at again (its other messages would only repeat the problem).
    refused = text_problems(data, ORDER_TEXT)
    errors: dict[str, list[str]] = dict(refused)

    def fail(field: str, message: str) -> None:
        if field not in refused:
            errors.setdefault(field, []).append(message)

    for name in sorted(set(data) - set(ORDER_FIELDS)):
        fail(name, f"Unknown field. Allowed fields: {', '.join(ORDER_FIELDS)}.")
    for name in REQUIRED_FIELDS:
        if data.get(name) is None:
            fail(name, "This field is required.")
    data = {name: value for name, value in data.items() if name not in refused}

    customer_id = data.get("customerId")
    if customer_id is not None and not (isinstance(customer_id, str) and CUSTOMER_ID.fullmatch(customer_id)):
        fail("customerId", 'Must be a six-digit string, e.g. "000002".')

    direction = data.get("direction")
    if direction is not None and _choice(direction, Direction) is None:
        fail("direction", f"Unknown direction {direction!r}; use Buy or Sell.")

    ticker = data.get("ticker")
    if ticker is not None:
        if isinstance(ticker, str) and TICKER.fullmatch(ticker.strip().upper()):
            ticker = ticker.strip().upper()
        else:
            fail("ticker", 'Must be a ticker symbol, e.g. "COIN".')

    order_type = data.get("type")
    if order_type is not None and _choice(order_type, OrderType) is None:
        fail("type", f"Unknown type {order_type!r}; use Limit or Market.")

    time_in_force = data.get("timeInForce", TimeInForce.DAY)
    if time_in_force is None:
        time_in_force = TimeInForce.DAY
    if _choice(time_in_force, TimeInForce) is None:
        fail("timeInForce", f"Unknown timeInForce {time_in_force!r}; use Day, GTC, IOC or FOK.")
    elif order_type == OrderType.MARKET and time_in_force == TimeInForce.GTC:
        fail("timeInForce", "A Market order cannot be GTC; use Day, IOC or FOK.")

    quantity = data.get("quantity")
    if quantity is not None:
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            fail("quantity", "Must be a whole number of shares.")
        elif quantity < 1:
            fail("quantity", "Must be a positive whole number of shares.")
        elif quantity > settings.MAX_ORDER_QUANTITY:
            fail("quantity", f"Must be at most {settings.MAX_ORDER_QUANTITY:,} shares.")

    price: Decimal | None = None
    raw_price = data.get("price")
    if order_type == OrderType.MARKET and raw_price is not None:
        fail("price", "A Market order has no price; leave it out or use a Limit order.")
    elif order_type == OrderType.LIMIT:
        if raw_price is None:
            fail("price", "A Limit order needs a price.")
        else:
            price, error = parse_price(raw_price)
            if error:
                fail("price", error)

    client_order_id = data.get("clientOrderId")
    if client_order_id is not None and not (
        isinstance(client_order_id, str) and CLIENT_ORDER_ID.fullmatch(client_order_id)
    ):
        fail("clientOrderId", "Must be 1 to 64 printable characters without spaces.")

    if errors:
        raise ValidationFailed(errors)
    # Every field below was checked above; the casts only tell the type checker so.
    return OrderRequest(
        customer_id=cast(str, customer_id),
        direction=cast(str, direction),
        ticker=cast(str, ticker),
        order_type=cast(str, order_type),
        quantity=cast(int, quantity),
        price=price,
        time_in_force=time_in_force,
        client_order_id=client_order_id,
    )


@functools.cache
def _ticker_columns() -> tuple[str, ...]:
    return tuple(field.attname for field in Ticker._meta.concrete_fields)


@functools.cache
def _ticker_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in Ticker._meta.concrete_fields)
    return f"SELECT {columns} FROM {quote(Ticker._meta.db_table)} WHERE symbol = %s AND active"  # noqa: S608


def entry_ticker(*, symbol: str) -> Ticker:
    """The active ticker `symbol`, as `broker.selectors.ticker_by_symbol` finds it, read as of now.

    Every order entry asks this once; the ORM spent five times the CPU of the query compiling the
    same statement again each time, so it is written out once per process here.
    """
    with connection.cursor() as cursor:
        cursor.execute(_ticker_sql(), [symbol])
        row = cursor.fetchone()
    if row is None:
        raise ApplicationError(f"Unknown ticker {symbol!r}.", field="ticker")
    return Ticker.from_db(connection.alias, list(_ticker_columns()), list(row))


@dataclass(frozen=True, slots=True)
class OrderEntry:
    request: OrderRequest
    customer: Customer
    ticker: Ticker


def order_entry_resolve(*, data: Any, user: Any) -> OrderEntry:
    """Validate an order request and find its customer and ticker, for the API, the ticket and bulk booking.

    Every problem is named at once: a malformed quantity does not hide an unknown customer or ticker,
    so a trader fixes a ticket (or a CSV row) in one go. Acting for someone else's customer is a 403,
    but only once the request is well formed (a malformed one is a 400 first, as the API documents).
    """
    errors: dict[str, list[str]] = {}
    request: OrderRequest | None = None
    try:
        request = parse_order_request(data)
    except ValidationFailed as error:
        errors = dict(error.errors)
    fields = data if isinstance(data, dict) else {}
    customer_id = request.customer_id if request else fields.get("customerId")
    symbol = request.ticker if request else str(fields.get("ticker") or "").strip().upper()

    customer = ticker = None
    if "customerId" not in errors and customer_id:
        try:
            customer = customer_for_user(user=user, customer_id=customer_id, permission=ENTER_ORDER, field="customerId")
        except Forbidden:
            if request is not None:
                raise
        except ApplicationError as error:
            errors.update(error.errors)
    if "ticker" not in errors and symbol:
        try:
            ticker = entry_ticker(symbol=symbol)
        except ApplicationError as error:
            errors.update(error.errors)
    if errors:
        raise ValidationFailed(errors)
    # No errors: all three were found above; the casts only tell the type checker so.
    return OrderEntry(
        request=cast(OrderRequest, request), customer=cast(Customer, customer), ticker=cast(Ticker, ticker)
    )
