"""Simulated liquidity providers: a quote ladder around each ticker's reference price.

Pure functions of (reference price, seeded RNG), so a given seed, venue, ticker and generation always
produce the same quotes: demos and tests are reproducible run to run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from pools.engine import Side

LIT_LEVELS = 8
# A side whose provider quantity falls below this is re-quoted after a match.
LIT_REPLENISH_BELOW = 1500
DARK_REPLENISH_BELOW = 1000
BASIS_POINT = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Quote:
    side: Side
    price: Decimal
    quantity: int


def tick_size(price: Decimal) -> Decimal:
    """US equities (Reg NMS rule 612): one cent at or above $1, 0.0001 below."""
    return Decimal("0.01") if price >= 1 else Decimal("0.0001")


def round_to_tick(price: Decimal, *, up: bool) -> Decimal:
    tick = tick_size(price)
    rounded = (price / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR) * tick
    return max(rounded, tick)


def provider_rng(*, seed: int, pool: str, ticker: str, generation: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes and runs
    # (unlike hash(), which is salted per process).
    return random.Random(f"{seed}:{pool}:{ticker}:{generation}")


def lit_ladder(*, reference_price: Decimal, rng: random.Random) -> list[Quote]:
    """Bids below and asks above the reference price, a few basis points apart, round-lot sizes."""
    half_spread = rng.randint(2, 8)
    step = rng.randint(3, 7)
    quotes: list[Quote] = []
    for level in range(LIT_LEVELS):
        distance = (half_spread + level * step) * BASIS_POINT
        quotes.append(
            Quote(Side.BUY, round_to_tick(reference_price * (1 - distance), up=False), rng.randint(1, 10) * 100)
        )
        quotes.append(
            Quote(Side.SELL, round_to_tick(reference_price * (1 + distance), up=True), rng.randint(1, 10) * 100)
        )
    return quotes


def dark_quotes(*, reference_price: Decimal, rng: random.Random) -> list[Quote]:
    """Hidden interest willing to trade at the midpoint within about 1% of the reference price."""
    quotes: list[Quote] = []
    for _ in range(2):
        width = rng.randint(50, 150) * BASIS_POINT
        quotes.append(Quote(Side.BUY, round_to_tick(reference_price * (1 + width), up=False), rng.randint(3, 8) * 100))
        quotes.append(Quote(Side.SELL, round_to_tick(reference_price * (1 - width), up=True), rng.randint(3, 8) * 100))
    return quotes
