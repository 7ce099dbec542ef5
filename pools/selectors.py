"""Venue-side reads: the NBBO and the displayed depth the router looks at."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from django.db.models import Max, Min, Sum

from pools import engine
from pools.models import BookOrder, BookOrderStatus, Pool, PoolKind


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


def pools_active(*, kind: str | None = None) -> list[Pool]:
    queryset = Pool.objects.filter(active=True)
    if kind:
        queryset = queryset.filter(kind=kind)
    return list(queryset.order_by("taker_fee", "name"))


def lit_depth(
    *, ticker_id: int, side: str, limit: Decimal | None, exclude_pool_ids: Collection[int] = ()
) -> list[DepthLevel]:
    """Displayed contra-side liquidity an order of `side` could take, best price first, per pool.

    For a buy these are the asks at or below the limit; for a sell the bids at or above it. Venues in
    `exclude_pool_ids` (halted ones, as the order flow passes them) are left out, as in `nbbo`.
    """
    contra = engine.Side.SELL if side == engine.Side.BUY else engine.Side.BUY
    queryset = BookOrder.objects.filter(
        book__ticker_id=ticker_id,
        book__pool__kind=PoolKind.LIT,
        book__pool__active=True,
        status=BookOrderStatus.OPEN,
        side=contra,
    ).exclude(book__pool_id__in=exclude_pool_ids)
    if limit is not None:
        queryset = queryset.filter(price__lte=limit) if side == engine.Side.BUY else queryset.filter(price__gte=limit)
    rows = queryset.values("book__pool_id", "price").annotate(quantity=Sum("remaining"))
    levels = [
        DepthLevel(pool_id=row["book__pool_id"], price=cast(Decimal, row["price"]), quantity=row["quantity"])
        for row in rows
    ]
    levels.sort(key=lambda level: level.price, reverse=side == engine.Side.SELL)
    return levels
