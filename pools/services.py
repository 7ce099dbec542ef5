"""Venue-side writes: lock a book, submit an order to it, cancel from it.

Every function here expects to run inside the caller's transaction with the book row locked by
`book_lock()`; that lock is what makes one matcher at a time per (pool, ticker).

Locks follow the global order documented in orders/services.py (customer -> books by pool id -> orders
-> children -> trades -> executions -> ledger -> reservations), always FOR NO KEY UPDATE: book orders and
executions reference their book (and trades their execution) through deferred foreign keys, whose
FOR KEY SHARE checks at commit a FOR UPDATE lock would block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from pools import engine, liquidity
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
    """What one submission did at the venue."""

    book_order: BookOrder
    executions: list[Execution]
    # execution id -> the resting side's client_ref (None when it was a liquidity provider)
    maker_client_refs: dict[int, int | None] = field(default_factory=dict)
    filled_quantity: int = 0
    rested_quantity: int = 0
    cancelled_quantity: int = 0


def fee_amount(*, per_share: Decimal, quantity: int) -> Decimal:
    return (per_share * quantity).quantize(CENT, rounding=ROUND_HALF_UP)


def book_lock(*, pool_id: int, ticker_id: int) -> Book:
    """Return the (pool, ticker) book with its row locked for this transaction, creating it if new.

    Caller must be inside `transaction.atomic`. A new book is seeded with provider liquidity. Callers
    that lock several books lock them by pool id, before any order row (module docstring).
    """
    queryset = Book.objects.select_for_update(of=("self",), no_key=True).select_related("pool", "ticker")
    try:
        return queryset.get(pool_id=pool_id, ticker_id=ticker_id)
    except Book.DoesNotExist:
        pass
    try:
        with transaction.atomic():
            Book.objects.create(pool_id=pool_id, ticker_id=ticker_id)
    except IntegrityError:
        pass  # created concurrently: fine, lock theirs
    book = queryset.get(pool_id=pool_id, ticker_id=ticker_id)
    if book.liquidity_generation == 0:
        _replenish_liquidity(book=book, venue_book=_load(book), force=True)
        _save_book_state(book=book, venue_book=_load(book))
    return book


def books_ensure(*, ticker_id: int) -> None:
    """Make sure every active venue has a (liquidity-seeded) book for the ticker."""
    have = set(Book.objects.filter(ticker_id=ticker_id).values_list("pool_id", flat=True))
    for pool_id in Pool.objects.filter(active=True).exclude(pk__in=have).values_list("pk", flat=True):
        with transaction.atomic():
            book_lock(pool_id=pool_id, ticker_id=ticker_id)


def _load(book: Book) -> engine.LitBook | engine.DarkBook:
    # Only limit orders ever rest, so an open order always has a price.
    rows = BookOrder.objects.filter(book=book, status=BookOrderStatus.OPEN, price__isnull=False).values_list(
        "id", "side", "price", "remaining", "sequence"
    )
    resting = (
        engine.RestingOrder(
            order_id=pk, side=engine.Side(side), price=cast(Decimal, price), quantity=remaining, sequence=sequence
        )
        for pk, side, price, remaining, sequence in rows
    )
    return engine.DarkBook(resting) if book.pool.kind == PoolKind.DARK else engine.LitBook(resting)


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
    """Match an incoming broker order against the locked book and persist everything it changed.

    Caller holds the book lock (`book_lock`). `midpoint` is the lit NBBO midpoint (dark pools only).
    """
    venue_book = _load(book)
    sequence = book.next_sequence
    book.next_sequence += 1
    incoming = BookOrder.objects.create(
        book=book,
        owner=BookOrderOwner.CLIENT,
        client_ref=client_ref,
        side=side,
        price=price,
        quantity=quantity,
        remaining=quantity,
        time_in_force=time_in_force,
        sequence=sequence,
    )
    order = engine.IncomingOrder(
        order_id=incoming.pk,
        side=engine.Side(side),
        price=price,
        quantity=quantity,
        time_in_force=engine.TimeInForce(time_in_force),
    )
    if isinstance(venue_book, engine.DarkBook):
        match = venue_book.submit(order, midpoint=midpoint, sequence=sequence)
    else:
        match = venue_book.submit(order, sequence=sequence)

    now = timezone.now()
    executions = Execution.objects.bulk_create(
        [
            Execution(
                book=book,
                pool=book.pool,
                ticker=book.ticker,
                maker_id=fill.maker_order_id,
                taker_id=incoming.pk,
                aggressor_side=side,
                price=fill.price,
                quantity=fill.quantity,
                maker_fee=fee_amount(per_share=book.pool.maker_fee, quantity=fill.quantity),
                taker_fee=fee_amount(per_share=book.pool.taker_fee, quantity=fill.quantity),
                executed_at=now,
            )
            for fill in match.fills
        ]
    )
    makers = {
        maker.pk: maker
        for maker in BookOrder.objects.filter(pk__in=match.maker_remaining.keys()).only(
            "id", "remaining", "status", "client_ref", "updated_at"
        )
    }
    for maker_id, remaining in match.maker_remaining.items():
        maker = makers[maker_id]
        maker.remaining = remaining
        maker.status = BookOrderStatus.OPEN if remaining else BookOrderStatus.FILLED
        maker.updated_at = now
    BookOrder.objects.bulk_update(makers.values(), ["remaining", "status", "updated_at"])

    incoming.remaining = match.rested_quantity
    if match.rested_quantity:
        incoming.status = BookOrderStatus.OPEN
    elif match.filled_quantity == quantity:
        incoming.status = BookOrderStatus.FILLED
    else:
        incoming.status = BookOrderStatus.CANCELLED
    incoming.save(update_fields=["remaining", "status", "updated_at"])

    if match.fills:
        _replenish_liquidity(book=book, venue_book=venue_book, force=False)
    _save_book_state(book=book, venue_book=venue_book)
    return VenueResult(
        book_order=incoming,
        executions=executions,
        maker_client_refs={execution.pk: makers[execution.maker_id].client_ref for execution in executions},
        filled_quantity=match.filled_quantity,
        rested_quantity=match.rested_quantity,
        cancelled_quantity=match.cancelled_quantity,
    )


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


def _replenish_liquidity(*, book: Book, venue_book: engine.LitBook | engine.DarkBook, force: bool) -> None:
    """Re-quote the simulated provider's side(s) that ran low, never crossing the book."""
    reference_price = book.ticker.reference_price
    if reference_price is None:
        return
    provider_quantity = _provider_quantity_by_side(book)
    is_dark = book.pool.kind == PoolKind.DARK
    threshold = liquidity.DARK_REPLENISH_BELOW if is_dark else liquidity.LIT_REPLENISH_BELOW
    low_sides = {side for side in engine.Side if force or provider_quantity.get(side, 0) < threshold}
    if not low_sides:
        return
    book.liquidity_generation += 1
    rng = liquidity.provider_rng(
        seed=settings.LIQUIDITY_SEED,
        pool=book.pool.name,
        ticker=book.ticker.symbol,
        generation=book.liquidity_generation,
    )
    if is_dark:
        quotes = liquidity.dark_quotes(reference_price=reference_price, rng=rng)
    else:
        quotes = liquidity.lit_ladder(reference_price=reference_price, rng=rng)
    new_orders = []
    for quote in _non_crossing(quotes, venue_book, low_sides):
        sequence = book.next_sequence
        book.next_sequence += 1
        new_orders.append(
            BookOrder(
                book=book,
                owner=BookOrderOwner.LIQUIDITY,
                side=quote.side,
                price=quote.price,
                quantity=quote.quantity,
                remaining=quote.quantity,
                time_in_force="GTC",
                sequence=sequence,
            )
        )
    for created in BookOrder.objects.bulk_create(new_orders):
        assert created.price is not None
        venue_book.add(
            engine.RestingOrder(
                order_id=created.pk,
                side=engine.Side(created.side),
                price=created.price,
                quantity=created.quantity,
                sequence=created.sequence,
            )
        )


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


def _provider_quantity_by_side(book: Book) -> dict[str, int]:
    rows = (
        BookOrder.objects.filter(book=book, status=BookOrderStatus.OPEN, owner=BookOrderOwner.LIQUIDITY)
        .values("side")
        .annotate(total=Sum("remaining"))
    )
    return {row["side"]: row["total"] for row in rows}


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
