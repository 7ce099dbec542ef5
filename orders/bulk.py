"""Bulk booking: a CSV of orders (or generated demo orders) validated row by row, then the valid rows booked.

Every row goes through the same validation and the same `order_place` as `POST /api/orders`. A batch of
at most `BULK_INLINE_ROWS` rows is handled inside the request; a larger one by the `orders.bulk_validate`
and `orders.bulk_book` tasks, which save their progress every `PROGRESS_EVERY` rows.

Booking is safe to repeat (a redelivered task, a double click): each row is placed with a clientOrderId
(its own, or `bulk-<batch>-<line>`), so placing it again returns the order it already made.
"""

from __future__ import annotations

import csv
import io
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction

from broker.exceptions import ApplicationError
from broker.models import Customer, Ticker
from orders import services
from orders.models import BulkBatch, BulkStatus, Direction, OrderType, TimeInForce
from orders.validation import ORDER_FIELDS, REQUIRED_FIELDS, order_entry_resolve

BULK_INLINE_ROWS = 100
BULK_MAX_ROWS = 20_000
BULK_MAX_BYTES = 5 * 1024 * 1024
PROGRESS_EVERY = 25
MAX_GENERATED = 5000


class BulkFileError(ApplicationError):
    """The file as a whole cannot be read (not CSV, wrong columns, too large): shown next to the upload."""

    def __init__(self, message: str):
        super().__init__(message, field="file")


def parse_csv(*, content: bytes) -> list[dict[str, str]]:
    """The file's rows as dicts keyed by the API's field names; refuse a file that is not such a CSV."""
    if len(content) > BULK_MAX_BYTES:
        raise BulkFileError(f"The file is larger than {BULK_MAX_BYTES // (1024 * 1024)} MB.")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BulkFileError("The file is not UTF-8 text; save it as CSV (UTF-8).") from error
    if "\x00" in text:  # a spreadsheet or binary file; Postgres could not store its rows either
        raise BulkFileError("The file contains NUL characters: it is not a CSV text file; save it as CSV (UTF-8).")
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise BulkFileError("The file is empty.")
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        raise BulkFileError(
            f"Missing column(s) {', '.join(missing)}. The header must name the order fields: {', '.join(ORDER_FIELDS)}."
        )
    unknown = [name for name in header if name not in ORDER_FIELDS]
    if unknown:
        raise BulkFileError(f"Unknown column(s) {', '.join(unknown)}. Allowed: {', '.join(ORDER_FIELDS)}.")
    reader.fieldnames = header
    rows = []
    try:
        for row in reader:
            if None in row:
                raise BulkFileError(f"Line {reader.line_num} has more values than the header has columns.")
            rows.append({name: (value or "").strip() for name, value in row.items()})
    except csv.Error as error:
        raise BulkFileError(f"Not a readable CSV file: {error}.") from error
    rows = [row for row in rows if any(row.values())]
    if not rows:
        raise BulkFileError("The file has a header but no orders.")
    if len(rows) > BULK_MAX_ROWS:
        raise BulkFileError(f"The file has {len(rows):,} orders; at most {BULK_MAX_ROWS:,} per upload.")
    return rows


def _request_body(fields: dict[str, str]) -> dict[str, Any]:
    """CSV text -> the JSON body the API would get: blanks are absent, a whole-number quantity is a number."""
    body: dict[str, Any] = {name: value for name, value in fields.items() if value != ""}
    quantity = body.get("quantity")
    if isinstance(quantity, str) and quantity.isdigit():
        body["quantity"] = int(quantity)
    return body


def _row_errors(fields: dict[str, str], *, actor: Any) -> dict[str, list[str]]:
    try:
        order_entry_resolve(data=_request_body(fields), user=actor)
    except ApplicationError as error:
        return error.errors or {"row": [error.message]}
    return {}


def bulk_batch_create(*, rows: list[dict[str, str]], source: str, actor: Any) -> BulkBatch:
    """Record the rows; validate them now if the batch is small, else after commit on a worker."""
    batch = BulkBatch.objects.create(
        source=source[:200],
        rows=[{"line": number, "fields": fields, "errors": {}} for number, fields in enumerate(rows, start=1)],
        total=len(rows),
        created_by=actor,
    )
    if len(rows) <= BULK_INLINE_ROWS:
        return bulk_batch_validate(batch_id=batch.pk)
    from orders.tasks import bulk_validate

    transaction.on_commit(lambda: bulk_validate.delay(batch.pk), robust=True)
    return batch


def bulk_batch_validate(*, batch_id: int) -> BulkBatch:
    """Check every row as the API would; the batch is then ready to book its valid rows."""
    batch = BulkBatch.objects.select_related("created_by").get(pk=batch_id)
    if batch.status != BulkStatus.VALIDATING:
        return batch
    for index, row in enumerate(batch.rows, start=1):
        row["errors"] = _row_errors(row["fields"], actor=batch.created_by)
        if index % PROGRESS_EVERY == 0:
            BulkBatch.objects.filter(pk=batch.pk).update(processed=index)
    batch.valid = sum(1 for row in batch.rows if not row["errors"])
    batch.processed = batch.total
    batch.status = BulkStatus.PREVIEW
    batch.save(update_fields=["rows", "valid", "processed", "status", "updated_at"])
    return batch


def bulk_batch_book(*, batch_id: int) -> BulkBatch:
    """Start booking the batch's valid rows: now if small, else on a worker. A second call does nothing."""
    claimed = BulkBatch.objects.filter(pk=batch_id, status=BulkStatus.PREVIEW).update(
        status=BulkStatus.BOOKING, processed=0
    )
    batch = BulkBatch.objects.get(pk=batch_id)
    if not claimed:
        return batch
    if batch.valid <= BULK_INLINE_ROWS:
        return bulk_batch_book_rows(batch_id=batch_id)
    from orders.tasks import bulk_book

    transaction.on_commit(lambda: bulk_book.delay(batch_id), robust=True)
    return batch


def bulk_batch_book_rows(*, batch_id: int) -> BulkBatch:
    """Place every valid row not yet placed, through the order service; record each order's outcome."""
    batch = BulkBatch.objects.select_related("created_by").get(pk=batch_id)
    if batch.status != BulkStatus.BOOKING:
        return batch
    done = 0
    for row in batch.rows:
        if row["errors"]:
            continue
        done += 1
        if "orderId" not in row:
            _book_row(batch, row)
        if done % PROGRESS_EVERY == 0:
            # Only the count: the rows (the whole file) are written once at the end. A redelivered task
            # places every row again and gets the same orders back through their clientOrderIds.
            BulkBatch.objects.filter(pk=batch.pk).update(processed=done)
    batch.processed = done
    batch.booked = sum(1 for row in batch.rows if "orderId" in row)
    batch.status = BulkStatus.BOOKED
    batch.save(update_fields=["rows", "processed", "booked", "status", "updated_at"])
    return batch


def _book_row(batch: BulkBatch, row: dict[str, Any]) -> None:
    body = _request_body(row["fields"])
    body.setdefault("clientOrderId", f"bulk-{batch.batch_id.hex}-{row['line']}")
    try:
        entry = order_entry_resolve(data=body, user=batch.created_by)
        order = services.order_place(
            request=entry.request, customer=entry.customer, ticker=entry.ticker, actor=batch.created_by
        ).order
    except ApplicationError as error:
        # Valid at preview but refused now (e.g. the clientOrderId was used since): flag the row.
        row["errors"] = error.errors or {"row": [error.message]}
        return
    row["orderId"] = str(order.order_id)
    row["status"] = order.status
    row["rejectReason"] = order.reject_reason


def bulk_rows_generate(*, count: int, seed: int | None = None) -> list[dict[str, str]]:
    """`count` plausible orders for demos: demo customers, active tickers, limits near the reference price."""
    if not 1 <= count <= MAX_GENERATED:
        raise ApplicationError(f"Choose between 1 and {MAX_GENERATED:,} orders.", field="count")
    customers = list(Customer.objects.order_by("customer_id").values_list("customer_id", flat=True))
    tickers = [
        (symbol, price)
        for symbol, price in Ticker.objects.filter(active=True)
        .order_by("symbol")
        .values_list("symbol", "reference_price")
        if price is not None
    ]
    if not customers or not tickers:
        raise ApplicationError("There are no customers or tickers to generate orders for.", field="count")
    generator = random.Random(seed)
    rows = []
    for _ in range(count):
        symbol, reference = generator.choice(tickers)
        direction = generator.choice([Direction.BUY, Direction.SELL])
        order_type = OrderType.LIMIT if generator.random() < 0.85 else OrderType.MARKET
        row = {
            "customerId": generator.choice(customers),
            "direction": str(direction),
            "ticker": symbol,
            "type": str(order_type),
            "quantity": str(generator.choice([10, 25, 50, 100, 200, 300, 500])),
            "price": "",
            "timeInForce": str(TimeInForce.DAY),
        }
        if order_type == OrderType.LIMIT:
            offset = Decimal(generator.randint(-200, 200)) / Decimal(10000)
            price = (reference * (1 + offset)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            row["price"] = str(price)
        rows.append(row)
    return rows
