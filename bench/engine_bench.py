"""Pure matching-engine throughput: `pools.engine.LitBook.submit` in-process, no database, no I/O.

This is the ceiling the rest of the pipeline is measured against: whatever the venue does per order
beyond this (loading the book, persisting executions) is overhead of the persistence design.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from decimal import Decimal

from pools.engine import IncomingOrder, LitBook, RestingOrder, Side, TimeInForce

TICK = Decimal("0.01")
MID = Decimal("100.00")
ORDERS_PER_LEVEL = 5
# Incoming limit prices land within this many ticks of the mid: wide enough that some rest and
# some sweep several levels, narrow enough that the book stays centred on the mid.
PRICE_SPREAD_TICKS = 25
MARKET_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class EngineResult:
    orders: int
    seconds: float
    fills: int
    resting_before: int
    resting_after: int

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds


def _initial_book(levels: int, rng: random.Random) -> list[RestingOrder]:
    resting: list[RestingOrder] = []
    sequence = 0
    for level in range(1, levels + 1):
        for side, price in ((Side.BUY, MID - level * TICK), (Side.SELL, MID + level * TICK)):
            for _ in range(ORDERS_PER_LEVEL):
                sequence += 1
                resting.append(RestingOrder(sequence, side, price, rng.randint(1, 10) * 100, sequence))
    return resting


def _incoming(count: int, first_id: int, rng: random.Random) -> list[IncomingOrder]:
    # Prices are built once per tick, so the timed loop never pays for Decimal construction.
    prices = {offset: MID + offset * TICK for offset in range(-PRICE_SPREAD_TICKS, PRICE_SPREAD_TICKS + 1)}
    orders: list[IncomingOrder] = []
    for number in range(count):
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        quantity = rng.randint(1, 10) * 100
        if rng.random() < MARKET_SHARE:
            orders.append(IncomingOrder(first_id + number, side, None, quantity, TimeInForce.IOC))
        else:
            price = prices[rng.randint(-PRICE_SPREAD_TICKS, PRICE_SPREAD_TICKS)]
            orders.append(IncomingOrder(first_id + number, side, price, quantity, TimeInForce.DAY))
    return orders


def run(*, orders: int, levels: int = 20, seed: int = 20261122) -> EngineResult:
    """Submit `orders` seeded-random limit (Day) and market (IOC) orders to a book of `levels` a side."""
    rng = random.Random(seed)
    resting = _initial_book(levels, rng)
    book = LitBook(resting)
    incoming = _incoming(orders, first_id=len(resting) + 1, rng=rng)
    first_sequence = len(resting) + 1
    fills = 0
    submit = book.submit
    start = time.perf_counter()
    for offset, order in enumerate(incoming):
        fills += len(submit(order, sequence=first_sequence + offset).fills)
    elapsed = time.perf_counter() - start
    return EngineResult(
        orders=orders, seconds=elapsed, fills=fills, resting_before=len(resting), resting_after=len(book)
    )
