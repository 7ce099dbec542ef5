"""Bulk booking: a CSV of orders (or generated demo orders) validated row by row, then the valid rows booked.

Every row goes through the same validation and the same `order_place` as `POST /api/orders`. A batch of
at most `BULK_INLINE_ROWS` rows is handled inside the request; a larger one by the `orders.bulk_validate`
and `orders.bulk_book` tasks, which save their progress every `PROGRESS_EVERY` rows.

Booking is safe to repeat (a redelivered task, a double click): each row is placed with a clientOrderId
(its own, or `bulk-<batch>-<line>`), so placing it again returns the order it already made.

A batch whose task was lost (broker down at commit) or killed (time limit, worker lost), or whose inline
booking failed half way, would stay Validating or Booking: the sweeper resumes it once it has been quiet
for BULK_SWEEP_AFTER_SECONDS (`bulk_batches_sweep`), and booking continues where it stopped (the rows
are saved every `ROWS_SAVE_EVERY` bookings; rows placed since are found again by their clientOrderId).
After BULK_MAX_ATTEMPTS resumes the batch ends Failed, with the reason on its screen.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone

from broker.exceptions import ApplicationError
from broker.models import Customer, Ticker
from broker.uploads import upload_limit_message
from orders import services
from orders.models import BulkBatch, BulkStatus, Direction, OrderType, TimeInForce
from orders.validation import ORDER_FIELDS, REQUIRED_FIELDS, order_entry_resolve

BULK_INLINE_ROWS = 100
BULK_MAX_ROWS = 20_000
BULK_MAX_BYTES = settings.FILE_UPLOAD_MAX_BYTES  # broker.uploads stops a larger file while it arrives
PROGRESS_EVERY = 25  # rows between progress writes (the count only; they also show the batch is alive)
ROWS_SAVE_EVERY = 500  # booked rows between saves of the rows themselves (the whole file: not every 25)
MAX_GENERATED = 5000

logger = logging.getLogger(__name__)


class BulkFileError(ApplicationError):
    """The file as a whole cannot be read (not CSV, wrong columns, too large): shown next to the upload."""

    def __init__(self, message: str):
        super().__init__(message, field="file")


def parse_upload(*, upload: UploadedFile) -> list[dict[str, str]]:
    """`parse_csv` of an uploaded file, refused by its recorded size before it is read into memory."""
    if upload.size is None or upload.size > BULK_MAX_BYTES:
        raise BulkFileError(upload_limit_message())
    return parse_csv(content=upload.read())


def parse_csv(*, content: bytes) -> list[dict[str, str]]:
    """The file's rows as dicts keyed by the API's field names; refuse a file that is not such a CSV."""
    if len(content) > BULK_MAX_BYTES:
        raise BulkFileError(upload_limit_message())
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
            # Spaces only: a control character (a line break in a quoted cell) is left for the row's
            # validation to refuse, naming its column.
            rows.append({name: (value or "").strip(" ") for name, value in row.items()})
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
        if index % PROGRESS_EVERY == 0 and not _progress_saved(batch.pk, (BulkStatus.VALIDATING,), processed=index):
            return BulkBatch.objects.get(pk=batch.pk)  # another run finished the batch: its result stands
    batch.valid = sum(1 for row in batch.rows if not row["errors"])
    batch.processed = batch.total
    batch.status = BulkStatus.PREVIEW
    # Only from Validating: a duplicate run (a resume while the first was merely slow) finishing after the
    # batch moved on to Booking must not take it back to Preview.
    BulkBatch.objects.filter(pk=batch.pk, status=BulkStatus.VALIDATING).update(
        rows=batch.rows, valid=batch.valid, processed=batch.processed, status=batch.status, updated_at=timezone.now()
    )
    batch.refresh_from_db()
    return batch


def bulk_batch_book(*, batch_id: int) -> BulkBatch:
    """Start booking the batch's valid rows: now if small, else on a worker. A second call does nothing."""
    claimed = BulkBatch.objects.filter(pk=batch_id, status=BulkStatus.PREVIEW).update(
        # A fresh start for the sweeper: the grace period runs from now, with all its attempts.
        status=BulkStatus.BOOKING,
        processed=0,
        updated_at=timezone.now(),
        swept_at=None,
        sweeps=0,
    )
    batch = BulkBatch.objects.get(pk=batch_id)
    if not claimed:
        return batch
    if batch.valid <= BULK_INLINE_ROWS:
        return bulk_batch_book_rows(batch_id=batch_id)
    from orders.tasks import bulk_book

    transaction.on_commit(lambda: bulk_book.delay(batch_id), robust=True)
    return batch


def _progress_saved(batch_id: int, statuses: tuple[str, ...], **progress: Any) -> bool:
    """Save a run's progress, and `updated_at` (a batch that makes progress is not one for the sweeper to
    resume), only while the batch is still in one of `statuses`. False: another run (a resume of a run
    that was merely slow) has finished the batch, and this one must stop rather than write its older
    progress over the result."""
    return bool(
        BulkBatch.objects.filter(pk=batch_id, status__in=statuses).update(**progress, updated_at=timezone.now())
    )


# A batch a booking run may still write to: Failed too, since the sweeper may give up on a run that is
# merely slow, and that run then finishes the batch after all.
STILL_BOOKING = (BulkStatus.BOOKING, BulkStatus.FAILED)


def bulk_batch_book_rows(*, batch_id: int) -> BulkBatch:
    """Place every valid row not yet placed, through the order service; record each order's outcome.

    Resumable: rows already recorded with their order are skipped, and a row placed after the last save
    of the rows (the run was killed) is placed again and gets its order back through its clientOrderId.
    """
    batch = BulkBatch.objects.select_related("created_by").get(pk=batch_id)
    if batch.status != BulkStatus.BOOKING:
        return batch
    done = placed = 0
    for row in batch.rows:
        if row["errors"]:
            continue
        done += 1
        if "orderId" not in row:
            _book_row(batch, row)
            placed += 1
            if placed % ROWS_SAVE_EVERY == 0:
                # What a resume skips. Not every row: each save writes the whole file. Only while still
                # booking (or given up on by the sweeper, which a live run may still finish): a duplicate run
                # stops once the other one booked the batch.
                if not _progress_saved(batch.pk, STILL_BOOKING, rows=batch.rows, processed=done):
                    return BulkBatch.objects.get(pk=batch.pk)
                continue
        if done % PROGRESS_EVERY == 0 and not _progress_saved(batch.pk, STILL_BOOKING, processed=done):
            return BulkBatch.objects.get(pk=batch.pk)
    batch.processed = done
    batch.booked = sum(1 for row in batch.rows if "orderId" in row)
    batch.status = BulkStatus.BOOKED
    batch.failure_reason = ""  # a run the sweeper had given up on that finished after all: it is booked
    BulkBatch.objects.filter(pk=batch.pk, status__in=(BulkStatus.BOOKING, BulkStatus.FAILED)).update(
        rows=batch.rows,
        processed=batch.processed,
        booked=batch.booked,
        status=batch.status,
        failure_reason="",
        updated_at=timezone.now(),
    )
    batch.refresh_from_db()
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


def bulk_batches_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Resume every batch quiet in Validating or Booking for BULK_SWEEP_AFTER_SECONDS (sweeper body).

    Each is claimed first (`_batches_claim`), so concurrent sweeps never both resume it and a resumed
    batch gets the grace period again before the next attempt. A batch claimed more than
    BULK_MAX_ATTEMPTS times ends Failed, with where it stopped as the reason shown on its screen.
    The tasks are published before the claims commit: a broker that cannot be reached rolls the claims
    back with the error, and no attempt is spent on a resume that was never sent.
    """
    from orders.tasks import bulk_book, bulk_validate

    now = now or timezone.now()
    resumed = failed = 0
    with transaction.atomic():
        for batch_id, status, attempts, processed, total, valid in _batches_claim(now=now):
            if attempts > settings.BULK_MAX_ATTEMPTS:
                BulkBatch.objects.filter(pk=batch_id).update(
                    status=BulkStatus.FAILED,
                    failure_reason=_failure_reason(
                        status=status, processed=processed, total=total, valid=valid, attempts=attempts - 1
                    ),
                    updated_at=now,
                )
                failed += 1
                continue
            (bulk_validate if status == BulkStatus.VALIDATING else bulk_book).delay(batch_id)
            resumed += 1
    if resumed or failed:
        logger.warning("sweeper resuming %d bulk batches, failing %d", resumed, failed)
    return {"batches": resumed, "batches_failed": failed}


def _batches_claim(*, now: datetime) -> list[tuple[int, str, int, int, int, int]]:
    """Claim the batches quiet in Validating or Booking past the grace period, counting the attempt.

    Quiet: neither progress (`updated_at`, written every PROGRESS_EVERY rows) nor a claim (`swept_at`)
    within BULK_SWEEP_AFTER_SECONDS. One conditional UPDATE; rows another sweep holds are skipped.
    """
    cutoff = now - timedelta(seconds=settings.BULK_SWEEP_AFTER_SECONDS)
    table = connection.ops.quote_name(BulkBatch._meta.db_table)
    sql = f"""
        UPDATE {table} AS claimed
        SET swept_at = %s, sweeps = claimed.sweeps + 1
        WHERE claimed.id IN (
            SELECT id FROM {table}
            WHERE status IN (%s, %s) AND updated_at < %s AND (swept_at IS NULL OR swept_at < %s)
            ORDER BY id
            LIMIT 100
            FOR UPDATE SKIP LOCKED
        )
        RETURNING claimed.id, claimed.status, claimed.sweeps, claimed.processed, claimed.total, claimed.valid
    """  # noqa: S608 (only the table name is formatted in)
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, BulkStatus.VALIDATING, BulkStatus.BOOKING, cutoff, cutoff])
        return list(cursor.fetchall())


def _failure_reason(*, status: str, processed: int, total: int, valid: int, attempts: int) -> str:
    if status == BulkStatus.VALIDATING:
        return (
            f"Validation stopped after {processed} of {total} rows and did not resume after {attempts} attempts. "
            "Nothing was booked: upload the file again."
        )
    return (
        f"Booking stopped after {processed} of {valid} rows and did not resume after {attempts} attempts. "
        "The orders it placed stand: check the blotter before booking the remaining rows again."
    )


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
