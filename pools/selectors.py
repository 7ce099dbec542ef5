"""Venue-side reads: the venues and their fee schedules, the NBBO and the displayed depth the router looks at.

The venues (a handful of `Pool` rows that change only when staff edit them) are cached per process:
every order's placement, routing and matching asks for them. The cache is checked against a version
kept in the shared cache (Redis), which every save or delete of a pool bumps (`venues_changed`, wired
to the model's signals in `pools.apps`), read at most every VERSION_CHECK_SECONDS: an edit in the admin
reaches the process that made it at once and every other web and worker process within a quarter of a
second. If the shared cache cannot be reached, the venues are read from the database.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.db import connection
from django.db.models import Count, Max, Min, QuerySet, Sum

from broker.cache import shared_cache
from broker.sql import CompiledQuery, literal_in
from pools import engine
from pools.models import Book, BookOrder, BookOrderStatus, Pool, PoolKind


@dataclass(frozen=True, slots=True)
class Nbbo:
    best_bid: Decimal | None
    best_ask: Decimal | None

    @property
    def midpoint(self) -> Decimal | None:
        return engine.midpoint(self.best_bid, self.best_ask)


@dataclass(frozen=True, slots=True)
class DepthLevel:
    pool_id: int
    price: Decimal
    quantity: int


def nbbo(*, ticker_id: int, exclude_pool_ids: Collection[int] = ()) -> Nbbo:
    """National best bid and offer across the active lit pools' displayed books.

    `exclude_pool_ids`: venues the caller may not trade with now (the order flow passes the halted
    ones), so their quotes cannot steer routing or set a dark price.
    """
    row = (
        Pool.objects.filter(kind=PoolKind.LIT, active=True, books__ticker_id=ticker_id)
        .exclude(pk__in=exclude_pool_ids)
        .aggregate(best_bid=Max("books__best_bid"), best_ask=Min("books__best_ask"))
    )
    return Nbbo(best_bid=row["best_bid"], best_ask=row["best_ask"])


logger = logging.getLogger(__name__)

VENUES_VERSION_KEY = "pools:venues-version"


@dataclass(slots=True)
class _Venues:
    version: str
    pools: tuple[Pool, ...]  # every pool, active or not, cheapest taker first
    books_ready: set[int] = field(default_factory=set)  # tickers with a book on every active pool


_venues: _Venues | None = None
# Set when this process changed a pool in a transaction still open: until it ends (committed or rolled
# back), what it reads may include its own uncommitted change, which must not be cached.
_dirty = False


# How long a process trusts the version it last read: every order asks for the venues several times, and
# one shared-cache round trip per quarter second instead of per ask is most of what the cache saves.
VERSION_CHECK_SECONDS = 0.25
_checked: tuple[float, str] | None = None


def _shared_version() -> str | None:
    global _checked
    now = time.monotonic()
    if _checked is not None and now - _checked[0] < VERSION_CHECK_SECONDS:
        return _checked[1]
    try:
        version = shared_cache().get(VENUES_VERSION_KEY)
        if version is None:
            shared_cache().add(VENUES_VERSION_KEY, uuid.uuid4().hex)
            version = shared_cache().get(VENUES_VERSION_KEY)
    except Exception:  # the shared cache is down: read the database every time rather than risk stale fees
        logger.warning("venue cache version unavailable; reading pools from the database", exc_info=True)
        return None
    _checked = (now, version) if version is not None else None
    return cast(str | None, version)


def _current() -> _Venues:
    global _venues, _dirty
    if _dirty:
        if connection.in_atomic_block:
            return _Venues(version="", pools=tuple(Pool.objects.order_by("taker_fee", "name")))
        _dirty, _venues = False, None
    version = _shared_version()
    if version is None or _venues is None or _venues.version != version:
        pools = tuple(Pool.objects.order_by("taker_fee", "name"))
        current = _Venues(version=version or "", pools=pools)
        if version is None:
            return current
        _venues = current
    return _venues


def venues_changed() -> None:
    """A pool was saved or deleted: every process reloads the venues at its next use."""
    global _venues, _dirty, _checked
    _venues, _dirty, _checked = None, connection.in_atomic_block, None
    try:
        shared_cache().set(VENUES_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        logger.exception("could not bump the venue cache version; other processes may use old fees")


def pools_active(*, kind: str | None = None) -> list[Pool]:
    """Active venues (of `kind`, if given), cheapest taker fee first. Cached per process (module docstring)."""
    return [pool for pool in _current().pools if pool.active and (kind is None or pool.kind == kind)]


def pools_by_id() -> dict[int, Pool]:
    """Every venue, active or not, by primary key (cached like `pools_active`)."""
    return {pool.pk: pool for pool in _current().pools}


def max_fee_rate() -> Decimal:
    """The highest per-share fee (maker or taker) of any active venue: what a buy reserves for fees."""
    return max((max(pool.maker_fee, pool.taker_fee) for pool in pools_active()), default=Decimal(0))


def books_known_ready(*, ticker_id: int) -> bool:
    """Whether this process already saw a book for the ticker on every active venue (books are never deleted)."""
    return ticker_id in _current().books_ready


def books_mark_ready(*, ticker_id: int) -> None:
    _current().books_ready.add(ticker_id)


def books_ready_load() -> int:
    """Mark, in one query, every ticker with a book on each active venue as ready; how many (a process's
    warm-up). Otherwise each process asks once per ticker, in the first order of that ticker it routes:
    with eight tickers and two order processes, one order in each of the first sixteen."""
    venues = _current()
    active = {pool.pk for pool in venues.pools if pool.active}
    if not active:
        return 0
    ready = (
        Book.objects.filter(pool_id__in=active)
        .values("ticker_id")
        .annotate(venues=Count("pool_id", distinct=True))
        .filter(venues=len(active))
        .values_list("ticker_id", flat=True)
    )
    venues.books_ready.update(ready)
    return len(venues.books_ready)


def _lit_depth(
    shape: tuple[str, bool], *, ticker_id: int, excluded: list[int], limit: Decimal | None = None
) -> QuerySet[BookOrder, Any]:
    side, limited = shape
    contra = engine.Side.SELL if side == engine.Side.BUY else engine.Side.BUY
    # Open as a literal (broker.sql.literal_in), for the partial index `bookorder_open_by_book` (see
    # pools.services._RESTING).
    queryset = BookOrder.objects.filter(
        literal_in(BookOrder, "status", [BookOrderStatus.OPEN]),
        book__ticker_id=ticker_id,
        book__pool__kind=PoolKind.LIT,
        book__pool__active=True,
        side=contra,
    ).exclude(book__pool_id__any=excluded)
    if limited:
        queryset = queryset.filter(price__lte=limit) if side == engine.Side.BUY else queryset.filter(price__gte=limit)
    return queryset.values("book__pool_id", "price").annotate(quantity=Sum("remaining"))


# Every routed order reads the depth: compiled once per process (broker.sql.CompiledQuery).
_LIT_DEPTH = CompiledQuery(
    _lit_depth,
    rehearse=[
        ((side, limited), {"ticker_id": 0, "excluded": [0], **({"limit": Decimal(1)} if limited else {})})
        for side in (engine.Side.BUY, engine.Side.SELL)
        for limited in (False, True)
    ],
)


def lit_depth(
    *, ticker_id: int, side: str, limit: Decimal | None, exclude_pool_ids: Collection[int] = ()
) -> list[DepthLevel]:
    """Displayed contra-side liquidity an order of `side` could take, best price first, per pool.

    For a buy these are the asks at or below the limit; for a sell the bids at or above it. Venues in
    `exclude_pool_ids` (halted ones, as the order flow passes them) are left out, as in `nbbo`.
    """
    excluded = sorted(exclude_pool_ids)
    if limit is None:
        rows = _LIT_DEPTH.rows((side, False), ticker_id=ticker_id, excluded=excluded)
    else:
        rows = _LIT_DEPTH.rows((side, True), ticker_id=ticker_id, excluded=excluded, limit=limit)
    levels = [DepthLevel(pool_id=pool_id, price=price, quantity=quantity) for pool_id, price, quantity in rows]
    levels.sort(key=lambda level: level.price, reverse=side == engine.Side.SELL)
    return levels
