"""Venue-side writes: lock a book, submit an order to it, cancel from it.

Every function here expects to run inside the caller's transaction with the book row locked by
`book_lock()`; that lock is what makes one matcher at a time per (pool, ticker).

Locks follow the global order documented in orders/services.py (customer -> books by pool id -> orders
-> children -> trades -> executions -> ledger -> reservations), always FOR NO KEY UPDATE: book orders and
executions reference their book (and trades their execution) through deferred foreign keys, whose
FOR KEY SHARE checks at commit a FOR UPDATE lock would block.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from broker.sql import CompiledQuery, insert_rows, literal_in, update_rows
from pools import engine, liquidity
from pools import selectors as pool_selectors
from pools.models import (
    Book,
    BookOrder,
    BookOrderOwner,
    BookOrderStatus,
    Execution,
    ExecutionCorrection,
    Pool,
    PoolKind,
)

CENT = Decimal("0.01")


@dataclass(slots=True)
class VenueResult:
    """What one submission did at the venue. Its rows are written by `BookSession.flush`."""

    book_order: BookOrder
    # Each fill's execution and the resting side's client_ref (None when a liquidity provider rested).
    fills: list[tuple[Execution, int | None]] = field(default_factory=list)
    filled_quantity: int = 0
    rested_quantity: int = 0
    cancelled_quantity: int = 0

    @property
    def executions(self) -> list[Execution]:
        return [execution for execution, _ in self.fills]


def fee_amount(*, per_share: Decimal, quantity: int) -> Decimal:
    return (per_share * quantity).quantize(CENT, rounding=ROUND_HALF_UP)


def book_lock(*, pool_id: int, ticker_id: int, wait: bool = True) -> Book | None:
    """Return the (pool, ticker) book with its row locked for this transaction, creating it if new.

    Caller must be inside `transaction.atomic`. A new book is seeded with provider liquidity. Callers
    that lock several books lock them by pool id, before any order row (module docstring). With
    `wait=False`, returns None at once when another transaction holds the book (SKIP LOCKED).
    """
    book = _book_locked(pool_id=pool_id, ticker_id=ticker_id, wait=wait)
    if book is not None:
        return book
    if not wait and Book.objects.filter(pool_id=pool_id, ticker_id=ticker_id).exists():
        return None  # it exists and someone else holds it
    try:
        with transaction.atomic():
            Book.objects.create(pool_id=pool_id, ticker_id=ticker_id)
    except IntegrityError:
        pass  # created concurrently: fine, lock theirs
    book = _book_locked(pool_id=pool_id, ticker_id=ticker_id, wait=wait)
    if book is None:
        return None
    if book.liquidity_generation == 0:
        session = BookSession(book)
        session.replenish(force=True)
        session.flush()
    return book


# Every match locks its book: compiled once (broker.sql.CompiledQuery); the shape is `wait`.
_BOOK_LOCKED = CompiledQuery(
    lambda wait, pool_id, ticker_id: (
        Book.objects.select_for_update(of=("self",), no_key=True, skip_locked=not wait)
        .select_related("pool", "ticker")
        .filter(pool_id=pool_id, ticker_id=ticker_id)
    ),
    rehearse=[(True, {"pool_id": 0, "ticker_id": 0}), (False, {"pool_id": 0, "ticker_id": 0})],
)


def _book_locked(*, pool_id: int, ticker_id: int, wait: bool) -> Book | None:
    books = _BOOK_LOCKED.objects(wait, pool_id=pool_id, ticker_id=ticker_id)  # (pool, ticker) is unique
    return books[0] if books else None


# Routing locks the lit books of its ticker that no one holds, to match its children in its own
# transaction (orders.services.routing): compiled once, like the single book's lock.
_BOOKS_FREE_LOCKED = CompiledQuery(
    lambda shape, ticker_id, pool_ids: (
        Book.objects.select_for_update(of=("self",), no_key=True, skip_locked=True)
        .select_related("pool", "ticker")
        .filter(ticker_id=ticker_id, pool_id__any=pool_ids)
        .order_by("pool_id")
    ),
    rehearse=[(None, {"ticker_id": 0, "pool_ids": [0]})],
)


def books_lock_free(*, ticker_id: int, pool_ids: list[int]) -> dict[int, Book]:
    """Lock, without waiting, the ticker's books on these venues that no other transaction holds; by
    pool id. The books another transaction holds are skipped: their holder (or the task sent for them)
    takes whatever waits there. Caller is inside `transaction.atomic` and holds no order row yet (books
    come first in the global lock order)."""
    return {book.pool_id: book for book in _BOOKS_FREE_LOCKED.objects(None, ticker_id=ticker_id, pool_ids=pool_ids)}


def books_ensure(*, ticker_id: int) -> None:
    """Make sure every active venue has a (liquidity-seeded) book for the ticker.

    Books are never deleted, so once a process has seen them all it does not ask again.
    """
    if pool_selectors.books_known_ready(ticker_id=ticker_id):
        return
    active = {pool.pk for pool in pool_selectors.pools_active()}
    have = set(Book.objects.filter(ticker_id=ticker_id, pool_id__in=active).values_list("pool_id", flat=True))
    for pool_id in sorted(active - have):
        with transaction.atomic():
            book_lock(pool_id=pool_id, ticker_id=ticker_id)
    pool_selectors.books_mark_ready(ticker_id=ticker_id)


class _BookOrderIds:
    """Primary keys for new book orders, drawn from the table's own sequence in blocks.

    A batch runs the engine in memory before anything is written, and the engine (and the executions)
    must know each new order's id; drawing them ahead lets every new order be written in one INSERT.
    """

    BLOCK = 64

    def __init__(self) -> None:
        self._free: list[int] = []
        self._pid = os.getpid()

    def take(self) -> int:
        if self._pid != os.getpid():  # a forked child must not hand out its parent's ids too
            self._free, self._pid = [], os.getpid()
        if not self._free:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [BookOrder._meta.db_table, self.BLOCK],
                )
                self._free = [row[0] for row in reversed(cursor.fetchall())]
        return self._free.pop()


# One per process: a batch of matches needs two or three new ids, and a block drawn per batch cost a
# statement each time. Ids a rolled-back batch drew are simply not used again (a gap).
_book_order_ids = _BookOrderIds()


# Every session loads its book's resting orders: compiled once per process (broker.sql.CompiledQuery).
# Open as a literal (broker.sql.literal_in): the partial index `bookorder_open_by_book` then serves the
# prepared statement's generic plan too; bound, the plan read every order the book ever had through its
# foreign-key index (132 rows an order after 20 s at 100 orders/s, and growing all day).
_RESTING = CompiledQuery(
    lambda shape, book_id: BookOrder.objects.filter(
        literal_in(BookOrder, "status", [BookOrderStatus.OPEN]), book_id=book_id, price__isnull=False
    ).values_list("id", "side", "price", "remaining", "sequence", "owner", "client_ref"),
    rehearse=[(None, {"book_id": 0})],
)


class BookSession:
    """One locked book, loaded once, taking any number of submissions in memory; `flush` writes them all.

    Caller holds the book lock (`book_lock`) for the whole session and calls `flush` before reading
    what it wrote (the executions get their ids there). Ids drawn but not used leave gaps in the book
    order ids, never in the book's sequence (its time priority), which stays gap-free.
    """

    def __init__(self, book: Book) -> None:
        self.book = book
        self.pool = book.pool
        self.dark = self.pool.kind == PoolKind.DARK
        rows = _RESTING.rows(book_id=book.pk)
        resting = []
        self._client_ref: dict[int, int | None] = {}
        self._open_by_ref: dict[int, int] = {}  # client_ref -> open book order id
        self._remaining: dict[int, int] = {}
        self._provider: set[int] = set()
        for pk, side, price, remaining, sequence, owner, client_ref in rows:
            resting.append(
                engine.RestingOrder(
                    order_id=pk,
                    side=engine.Side(side),
                    price=cast(Decimal, price),
                    quantity=remaining,
                    sequence=sequence,
                )
            )
            self._remember(pk, side=side, remaining=remaining, owner=owner, client_ref=client_ref)
        self.venue_book: engine.LitBook | engine.DarkBook = (
            engine.DarkBook(resting) if self.dark else engine.LitBook(resting)
        )
        self._new: dict[int, BookOrder] = {}  # written by flush, with their final state
        self._changed: dict[int, tuple[int, str]] = {}  # loaded order id -> (remaining, status)
        self._executions: list[Execution] = []
        self._ids = _book_order_ids
        self._now = timezone.now()

    def _remember(self, pk: int, *, side: str, remaining: int, owner: str, client_ref: int | None) -> None:
        self._client_ref[pk] = client_ref
        self._remaining[pk] = remaining
        if owner == BookOrderOwner.LIQUIDITY:
            self._provider.add(pk)
        if client_ref is not None:
            self._open_by_ref[client_ref] = pk

    def _set_remaining(self, pk: int, remaining: int, status: str) -> None:
        self._remaining[pk] = remaining
        if status != BookOrderStatus.OPEN:
            client_ref = self._client_ref.get(pk)
            if client_ref is not None:
                self._open_by_ref.pop(client_ref, None)
        if pk in self._new:
            self._new[pk].remaining, self._new[pk].status = remaining, status
        else:
            self._changed[pk] = (remaining, status)

    def _next_sequence(self) -> int:
        sequence = self.book.next_sequence
        self.book.next_sequence += 1
        return sequence

    def submit(
        self,
        *,
        client_ref: int,
        side: str,
        price: Decimal | None,
        quantity: int,
        time_in_force: str,
        midpoint: Decimal | None = None,
    ) -> VenueResult:
        """Match an incoming broker order against the book; `midpoint` is the lit NBBO midpoint (dark only)."""
        pk, sequence = self._ids.take(), self._next_sequence()
        incoming = engine.IncomingOrder(
            order_id=pk,
            side=engine.Side(side),
            price=price,
            quantity=quantity,
            time_in_force=engine.TimeInForce(time_in_force),
        )
        if isinstance(self.venue_book, engine.DarkBook):
            match = self.venue_book.submit(incoming, midpoint=midpoint, sequence=sequence)
        else:
            match = self.venue_book.submit(incoming, sequence=sequence)
        fills: list[tuple[Execution, int | None]] = []
        for fill in match.fills:
            execution = Execution(
                book=self.book,
                pool=self.pool,
                ticker_id=self.book.ticker_id,
                maker_id=fill.maker_order_id,
                taker_id=pk,
                aggressor_side=side,
                price=fill.price,
                quantity=fill.quantity,
                maker_fee=fee_amount(per_share=self.pool.maker_fee, quantity=fill.quantity),
                taker_fee=fee_amount(per_share=self.pool.taker_fee, quantity=fill.quantity),
                executed_at=self._now,
            )
            self._executions.append(execution)
            fills.append((execution, self._client_ref.get(fill.maker_order_id)))
        for maker_id, remaining in match.maker_remaining.items():
            self._set_remaining(maker_id, remaining, BookOrderStatus.OPEN if remaining else BookOrderStatus.FILLED)
        if match.rested_quantity:
            status = BookOrderStatus.OPEN
        elif match.filled_quantity == quantity:
            status = BookOrderStatus.FILLED
        else:
            status = BookOrderStatus.CANCELLED
        book_order = BookOrder(
            id=pk,
            book=self.book,
            owner=BookOrderOwner.CLIENT,
            client_ref=client_ref,
            side=side,
            price=price,
            quantity=quantity,
            remaining=match.rested_quantity,
            time_in_force=time_in_force,
            sequence=sequence,
            status=status,
        )
        self._new[pk] = book_order
        if match.rested_quantity:
            self._remember(
                pk, side=side, remaining=match.rested_quantity, owner=BookOrderOwner.CLIENT, client_ref=client_ref
            )
        if match.fills:
            self.replenish(force=False)
        return VenueResult(
            book_order=book_order,
            fills=fills,
            filled_quantity=match.filled_quantity,
            rested_quantity=match.rested_quantity,
            cancelled_quantity=match.cancelled_quantity,
        )

    def cancel(self, *, client_ref: int) -> int:
        """Take the child's open order off the book; the quantity taken off (0 if none). A replay is a no-op."""
        pk = self._open_by_ref.get(client_ref)
        if pk is None:
            return 0
        self.venue_book.cancel(pk)
        cancelled = self._remaining[pk]
        self._set_remaining(pk, 0, BookOrderStatus.CANCELLED)
        return cancelled

    def replenish(self, *, force: bool) -> None:
        """Re-quote the simulated provider's side(s) that ran low, never crossing the book."""
        book = self.book
        reference_price = book.ticker.reference_price
        if reference_price is None:
            return
        provider_quantity: dict[str, int] = {}
        for resting in self.venue_book.resting():
            if resting.order_id in self._provider:
                provider_quantity[resting.side] = provider_quantity.get(resting.side, 0) + resting.quantity
        threshold = liquidity.DARK_REPLENISH_BELOW if self.dark else liquidity.LIT_REPLENISH_BELOW
        low_sides = {side for side in engine.Side if force or provider_quantity.get(side, 0) < threshold}
        if not low_sides:
            return
        book.liquidity_generation += 1
        rng = liquidity.provider_rng(
            seed=settings.LIQUIDITY_SEED,
            pool=self.pool.name,
            ticker=book.ticker.symbol,
            generation=book.liquidity_generation,
        )
        if self.dark:
            quotes = liquidity.dark_quotes(reference_price=reference_price, rng=rng)
        else:
            quotes = liquidity.lit_ladder(reference_price=reference_price, rng=rng)
        for quote in list(_non_crossing(quotes, self.venue_book, low_sides)):
            pk, sequence = self._ids.take(), self._next_sequence()
            self._new[pk] = BookOrder(
                id=pk,
                book=book,
                owner=BookOrderOwner.LIQUIDITY,
                side=quote.side,
                price=quote.price,
                quantity=quote.quantity,
                remaining=quote.quantity,
                time_in_force="GTC",
                sequence=sequence,
            )
            self.venue_book.add(
                engine.RestingOrder(
                    order_id=pk,
                    side=engine.Side(quote.side),
                    price=quote.price,
                    quantity=quote.quantity,
                    sequence=sequence,
                )
            )
            self._remember(
                pk, side=quote.side, remaining=quote.quantity, owner=BookOrderOwner.LIQUIDITY, client_ref=None
            )

    def flush(self) -> None:
        """Write everything the session did: new book orders, changed resting ones, executions, the book."""
        if self._new:
            insert_rows(BookOrder, list(self._new.values()))
            self._new = {}
        if self._changed:
            changed = [
                BookOrder(id=pk, remaining=remaining, status=status, updated_at=self._now)
                for pk, (remaining, status) in sorted(self._changed.items())
            ]
            update_rows(BookOrder, changed, ["remaining", "status", "updated_at"])
            self._changed = {}
        if self._executions:
            insert_rows(Execution, self._executions)
            self._executions = []
        if isinstance(self.venue_book, engine.LitBook):
            self.book.best_bid = self.venue_book.best_bid()
            self.book.best_ask = self.venue_book.best_ask()
        # One precompiled UPDATE (the ORM's save compiled it again for every batch: 7% of an order worker's CPU).
        self.book.updated_at = self._now
        update_rows(Book, [self.book], _BOOK_STATE)


# What a session writes back to its book row.
_BOOK_STATE = ("next_sequence", "best_bid", "best_ask", "liquidity_generation", "updated_at")


def book_submit(
    *,
    book: Book,
    client_ref: int,
    side: str,
    price: Decimal | None,
    quantity: int,
    time_in_force: str,
    midpoint: Decimal | None = None,
) -> VenueResult:
    """Match one incoming broker order against the locked book and persist everything it changed."""
    session = BookSession(book)
    result = session.submit(
        client_ref=client_ref,
        side=side,
        price=price,
        quantity=quantity,
        time_in_force=time_in_force,
        midpoint=midpoint,
    )
    session.flush()
    return result


def book_cancel(*, book: Book, client_ref: int) -> int:
    """Cancel the child's open order at this venue; return the quantity taken off (0 if none).

    Caller holds the book lock. Replaying it is a no-op.
    """
    open_order = BookOrder.objects.filter(book=book, client_ref=client_ref, status=BookOrderStatus.OPEN).first()
    if open_order is None:
        return 0
    cancelled = open_order.remaining
    open_order.remaining = 0
    open_order.status = BookOrderStatus.CANCELLED
    open_order.save(update_fields=["remaining", "status", "updated_at"])
    if book.pool.kind == PoolKind.LIT:
        _save_book_state(book=book, venue_book=_load(book))
    return cancelled


def _non_crossing(
    quotes: Iterable[liquidity.Quote], venue_book: engine.LitBook | engine.DarkBook, sides: set[engine.Side]
) -> Iterable[liquidity.Quote]:
    if isinstance(venue_book, engine.DarkBook):
        yield from (quote for quote in quotes if quote.side in sides)
        return
    # A provider quote through the opposite side would trade on arrival; simply skip those levels.
    best_bid, best_ask = venue_book.best_bid(), venue_book.best_ask()
    for quote in quotes:
        if quote.side not in sides:
            continue
        if quote.side == engine.Side.BUY and best_ask is not None and quote.price >= best_ask:
            continue
        if quote.side == engine.Side.SELL and best_bid is not None and quote.price <= best_bid:
            continue
        yield quote


def _load(book: Book) -> engine.LitBook | engine.DarkBook:
    # Only limit orders ever rest, so an open order always has a price.
    rows = BookOrder.objects.filter(
        literal_in(BookOrder, "status", [BookOrderStatus.OPEN]), book=book, price__isnull=False
    ).values_list("id", "side", "price", "remaining", "sequence")
    resting = (
        engine.RestingOrder(
            order_id=pk,
            side=engine.Side(side),
            price=cast(Decimal, price),
            quantity=remaining,
            sequence=sequence,
        )
        for pk, side, price, remaining, sequence in rows
    )
    return engine.DarkBook(resting) if book.pool.kind == PoolKind.DARK else engine.LitBook(resting)


def _save_book_state(*, book: Book, venue_book: engine.LitBook | engine.DarkBook) -> None:
    if isinstance(venue_book, engine.LitBook):
        book.best_bid = venue_book.best_bid()
        book.best_ask = venue_book.best_ask()
    book.save(update_fields=["next_sequence", "best_bid", "best_ask", "liquidity_generation", "updated_at"])


def pool_seed(*, name: str, kind: str, maker_fee: Decimal, taker_fee: Decimal, description: str = "") -> Pool:
    """Create or update a venue's fee schedule (idempotent, used by the demo seed)."""
    pool, _ = Pool.objects.update_or_create(
        name=name,
        defaults={"kind": kind, "maker_fee": maker_fee, "taker_fee": taker_fee, "description": description},
    )
    return pool


def execution_correct(*, execution_id: int, price: Decimal, quantity: int, bust: bool, reason: str) -> Execution:
    """Apply a correction agreed with the venue: keep the old values, recompute fees, or bust it.

    Caller holds the locks of the orders, children and trades this execution made (in that order);
    this locks the execution row alone (not its pool: FOR UPDATE of the pool would stall every commit
    that references the venue).
    """
    execution = (
        Execution.objects.select_for_update(of=("self",), no_key=True).select_related("pool").get(pk=execution_id)
    )
    ExecutionCorrection.objects.create(
        execution=execution,
        previous_price=execution.price,
        previous_quantity=execution.quantity,
        previous_maker_fee=execution.maker_fee,
        previous_taker_fee=execution.taker_fee,
        busted=bust,
        reason=reason,
    )
    if bust:
        execution.busted = True
    else:
        execution.price = price
        execution.quantity = quantity
        execution.maker_fee = fee_amount(per_share=execution.pool.maker_fee, quantity=quantity)
        execution.taker_fee = fee_amount(per_share=execution.pool.taker_fee, quantity=quantity)
    execution.save(update_fields=["price", "quantity", "maker_fee", "taker_fee", "busted"])
    return execution
