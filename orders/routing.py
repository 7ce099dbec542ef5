"""Smart order router decisions, as pure functions of a market snapshot.

The services feed these a snapshot (venues, displayed depth, NBBO midpoint) and persist the plan; keeping
the decisions here makes every routing rule testable without a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

BUY = "Buy"


@dataclass(frozen=True, slots=True)
class Venue:
    pool_id: int
    name: str
    maker_fee: Decimal
    taker_fee: Decimal


@dataclass(frozen=True, slots=True)
class Level:
    """Displayed contra-side liquidity at one price on one lit venue."""

    pool_id: int
    price: Decimal
    quantity: int


@dataclass(slots=True)
class _Available:
    """What the router still believes it can take at a level while it assigns children."""

    level: Level
    quantity: int


@dataclass(frozen=True, slots=True)
class ChildPlan:
    quantity: int
    pool_id: int
    reason: str
    venue_time_in_force: str


def show_price(price: Decimal | None) -> str:
    """Prices in reasons read like prices: 256.62, not 256.6200; no limit reads MKT."""
    if price is None:
        return "MKT"
    return f"{price:.2f}" if price == price.quantize(Decimal("0.01")) else f"{price.normalize()}"


def split_quantity(quantity: int, max_child: int) -> list[int]:
    """8614 with max 1000 -> eight 1000s and a 614: full slices first, the odd lot last."""
    full, rest = divmod(quantity, max_child)
    return [max_child] * full + ([rest] if rest else [])


def midpoint_inside_limit(*, side: str, limit: Decimal | None, midpoint: Decimal | None) -> bool:
    if midpoint is None:
        return False
    if limit is None:
        return True
    return midpoint <= limit if side == BUY else midpoint >= limit


def _sorted_levels(side: str, levels: Sequence[Level], venues: dict[int, Venue]) -> list[Level]:
    # Best price first; at the same price the cheaper venue to take from.
    def key(level: Level) -> tuple[Decimal, Decimal]:
        price = level.price if side == BUY else -level.price
        return price, venues[level.pool_id].taker_fee

    return sorted((level for level in levels if level.pool_id in venues), key=key)


def lit_venue_for_resting(lit: Sequence[Venue]) -> Venue | None:
    """Where an order with nothing to take should rest: the cheapest venue to rest on."""
    return min(lit, key=lambda venue: (venue.maker_fee, venue.taker_fee, venue.name), default=None)


def venue_time_in_force(*, parent_time_in_force: str, is_market: bool, dark: bool) -> str:
    # Dark slices are pinged immediate-or-cancel: a miss comes straight back to be re-routed to a lit
    # venue instead of hiding the order in the dark. Market orders never rest anywhere.
    if dark or is_market:
        return "IOC"
    return parent_time_in_force


def plan_children(
    *,
    side: str,
    limit: Decimal | None,
    quantity: int,
    time_in_force: str,
    max_child: int,
    dark_min_quantity: int,
    midpoint: Decimal | None,
    dark: Sequence[Venue],
    lit: Sequence[Venue],
    depth: Sequence[Level],
) -> list[ChildPlan]:
    """Split the order and pick a venue and reason for every child.

    Large orders ping each dark pool first when the NBBO midpoint is inside the limit (price
    improvement, no information leakage); the rest sweep the lit venues by best displayed price,
    then lowest taker fee, consuming the displayed depth as each child is assigned.
    """
    is_market = limit is None
    slices = split_quantity(quantity, max_child)
    plans: list[ChildPlan] = []
    use_dark = (
        quantity >= dark_min_quantity
        and bool(dark)
        and midpoint_inside_limit(side=side, limit=limit, midpoint=midpoint)
    )
    if use_dark:
        for venue, child_quantity in zip(dark, slices, strict=False):
            plans.append(
                ChildPlan(
                    quantity=child_quantity,
                    pool_id=venue.pool_id,
                    reason=(
                        f"dark first: large order, NBBO midpoint {show_price(midpoint)} "
                        f"inside limit {show_price(limit)}"
                    ),
                    venue_time_in_force="IOC",
                )
            )
        slices = slices[len(plans) :]

    lit_by_id = {venue.pool_id: venue for venue in lit}
    remaining_depth = [_Available(level, level.quantity) for level in _sorted_levels(side, depth, lit_by_id)]
    lit_tif = venue_time_in_force(parent_time_in_force=time_in_force, is_market=is_market, dark=False)
    fallback = lit_venue_for_resting(lit)
    for child_quantity in slices:
        target = next((entry for entry in remaining_depth if entry.quantity > 0), None)
        if target is None:
            if fallback is None:
                raise ValueError("no active lit venue to route to")
            plans.append(
                ChildPlan(
                    quantity=child_quantity,
                    pool_id=fallback.pool_id,
                    reason=f"no displayed liquidity within limit: rests at lowest-fee venue {fallback.name}",
                    venue_time_in_force=lit_tif,
                )
            )
            continue
        level = target.level
        venue = lit_by_id[level.pool_id]
        plans.append(
            ChildPlan(
                quantity=child_quantity,
                pool_id=venue.pool_id,
                reason=(
                    f"best lit price {show_price(level.price)} on {venue.name} "
                    f"(taker fee {venue.taker_fee.normalize()}/sh)"
                ),
                venue_time_in_force=lit_tif,
            )
        )
        # The child will take from this venue first: remove what it can take there from the snapshot.
        wanted = child_quantity
        for entry in remaining_depth:
            if wanted == 0:
                break
            if entry.level.pool_id != venue.pool_id or entry.quantity == 0:
                continue
            taken = min(wanted, entry.quantity)
            entry.quantity -= taken
            wanted -= taken
    return plans


def next_lit_venue(
    *,
    side: str,
    tried: Sequence[str],
    lit: Sequence[Venue],
    depth: Sequence[Level],
    can_rest: bool,
) -> tuple[Venue, str] | None:
    """Where a child goes after a venue could not fill it (IOC remainder, dark miss), or None.

    The untried lit venue with the best displayed price within the limit; if there is none and the
    order may rest (Day/GTC limit), the cheapest untried lit venue to rest on.
    """
    untried = {venue.pool_id: venue for venue in lit if venue.name not in tried}
    for level in _sorted_levels(side, depth, untried):
        venue = untried[level.pool_id]
        return venue, f"re-routed: best remaining lit price {show_price(level.price)} on {venue.name}"
    if can_rest:
        venue_to_rest = lit_venue_for_resting(list(untried.values()))
        if venue_to_rest is not None:
            return venue_to_rest, f"re-routed: no displayed liquidity within limit, rests at {venue_to_rest.name}"
    return None
