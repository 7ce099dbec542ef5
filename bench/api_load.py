"""HTTP load against the running web server: accepted orders/s and POST-to-fill latency.

Both use asyncio in the bench process: on a small machine the load generator shares the CPUs with the
server, Postgres and the worker, and one event loop costs far less CPU than a pool of threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.hotbook import crossing_price

CENT = Decimal("0.01")
POST_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Client:
    customer_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    reference: Decimal


def _order_body(client: Client, instrument: Instrument, direction: str, price: Decimal) -> dict[str, Any]:
    return {
        "customerId": client.customer_id,
        "direction": direction,
        "ticker": instrument.symbol,
        "type": "Limit",
        "quantity": 100,
        "price": str(price),
        "timeInForce": "Day",
    }


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation: p99 of 1000 samples is the 990th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- accepted orders/s ------------------------------------------------------------------------------


@dataclass(slots=True)
class AcceptResult:
    accepted: int
    seconds: float
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def accepted_per_second(self) -> float:
        return self.accepted / self.seconds


async def _accept_load(
    base_url: str, clients: list[Client], instruments: list[Instrument], concurrency: int, seconds: float, warmup: int
) -> AcceptResult:
    result = AcceptResult(accepted=0, seconds=seconds)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

        async def post(worker: int, number: int) -> int:
            client = clients[worker % len(clients)]
            instrument = instruments[(worker + number) % len(instruments)]
            direction = "Buy" if (worker + number) % 2 == 0 else "Sell"
            body = _order_body(client, instrument, direction, crossing_price(instrument.reference, direction))
            response = await http.post("/api/orders", json=body, headers={"Authorization": f"Token {client.token}"})
            return response.status_code

        # Warm-up outside the window: first requests pay for lazy imports and connection set-up.
        # Its failures are not the measurement's business; the window below counts its own.
        await asyncio.gather(*(post(i, 0) for i in range(warmup)), return_exceptions=True)

        deadline = time.perf_counter() + seconds

        async def run_worker(worker: int) -> None:
            number = 1
            while time.perf_counter() < deadline:
                outcome: int | str
                try:
                    outcome = await post(worker, number)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                # Only answers that arrived inside the window count, in either column.
                if time.perf_counter() <= deadline:
                    if outcome == 201:
                        result.accepted += 1
                    else:
                        result.errors[outcome if isinstance(outcome, str) else f"HTTP {outcome}"] += 1
                number += 1

        await asyncio.gather(*(run_worker(worker) for worker in range(concurrency)))
    return result


def accepted_orders(
    *, base_url: str, clients: list[Client], instruments: list[Instrument], concurrency: int, seconds: float
) -> AcceptResult:
    return asyncio.run(_accept_load(base_url, clients, instruments, concurrency, seconds, warmup=concurrency * 2))


# --- POST-to-fill latency ---------------------------------------------------------------------------


@dataclass(slots=True)
class LatencyResult:
    sent: int
    accepted: int
    latencies: list[float]  # seconds, one per order that got a fill within the timeout
    post_latencies: list[float]  # seconds from just before the POST to its 201
    missed: int  # accepted orders with no fill message within the timeout
    errors: Counter[str] = field(default_factory=Counter)
    achieved_rate: float = 0.0
    stream_closed: str | None = None  # set when the server closed the fill stream mid-run

    @property
    def unfilled(self) -> int:
        """Sent orders with no fill within the timeout: not accepted, or accepted and not filled."""
        return self.sent - len(self.latencies)

    def percentile_over_sent(self, fraction: float) -> float | None:
        """Percentile over every order sent, an unfilled one counting as infinitely late.

        Taking it over the filled orders only would report the lucky few when most orders fail.
        """
        return percentile(self.latencies + [math.inf] * self.unfilled, fraction)


def marketable_buy_price(reference: Decimal) -> Decimal:
    # 2% above the reference clears every level the simulated providers quote (at most ~0.6% away),
    # so the order fills on arrival at whichever lit venue it is routed to.
    return (reference * Decimal("1.02")).quantize(CENT, rounding=ROUND_CEILING)


async def _latency_load(
    base_url: str,
    ws_url: str,
    staff_token: str,
    clients: list[Client],
    instruments: list[Instrument],
    rate: float,
    seconds: float,
    fill_timeout: float,
) -> LatencyResult:
    sent_at: dict[str, float] = {}
    first_fill: dict[str, float] = {}
    post_latencies: list[float] = []
    errors: Counter[str] = Counter()
    stream_closed: list[str] = []
    sent = 0
    start = time.perf_counter()
    # No cap on connections: in an open-loop test a client-side pool limit would queue orders in the
    # bench instead of at the server, and hide the server's own behaviour under the offered load.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=128)
    async with (
        connect(f"{ws_url}/ws/fills/?token={staff_token}", open_timeout=30, max_size=None) as ws,
        # 10 s: an order not even accepted by then would count as missed anyway (5 s fill timeout).
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=POST_TIMEOUT) as http,
    ):
        hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        if hello.get("type") != "subscribed":
            raise RuntimeError(f"unexpected first fills message: {hello}")

        async def read_fills() -> None:
            try:
                async for raw in ws:
                    received = time.perf_counter()
                    message = json.loads(raw)
                    if message.get("type") == "fill":
                        # Staff see every fill, including maker fills of other orders: only the first
                        # fill per order id counts, and only for ids this run sent.
                        first_fill.setdefault(str(message["trade"]["orderId"]), received)
            except ConnectionClosed as closed:
                # The server ending the stream is a result (fills after it count as missed), not a
                # reason to lose the whole run.
                stream_closed.append(f"closed {time.perf_counter() - start:.1f} s in: {closed}")

        reader = asyncio.create_task(read_fills())

        async def send(number: int) -> None:
            client = clients[number % len(clients)]
            instrument = instruments[number % len(instruments)]
            body = _order_body(client, instrument, "Buy", marketable_buy_price(instrument.reference))
            started = time.perf_counter()
            try:
                response = await http.post("/api/orders", json=body, headers={"Authorization": f"Token {client.token}"})
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1
                return
            if response.status_code != 201:
                errors[f"HTTP {response.status_code}"] += 1
                return
            post_latencies.append(time.perf_counter() - started)
            sent_at[str(response.json()["orderId"])] = started

        # Open loop at a steady rate: each order goes at its scheduled time whether or not earlier
        # ones were answered, so a slow server shows up as latency instead of a lower send rate.
        total = round(rate * seconds)
        start = time.perf_counter()
        pending: list[asyncio.Task[None]] = []
        for number in range(total):
            delay = start + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(send(number)))
            sent += 1
        achieved_rate = total / (time.perf_counter() - start)
        await asyncio.gather(*pending)
        # Every accepted order gets fill_timeout from its own send time to produce a fill.
        last_deadline = max(sent_at.values(), default=time.perf_counter()) + fill_timeout
        while (
            time.perf_counter() < last_deadline
            and not reader.done()
            and any(order_id not in first_fill for order_id in sent_at)
        ):
            await asyncio.sleep(0.05)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    latencies: list[float] = []
    missed = 0
    for order_id, started in sent_at.items():
        received = first_fill.get(order_id)
        if received is None or received - started > fill_timeout:
            missed += 1
        else:
            latencies.append(received - started)
    return LatencyResult(
        sent=sent,
        accepted=len(sent_at),
        latencies=latencies,
        post_latencies=post_latencies,
        missed=missed,
        errors=errors,
        achieved_rate=achieved_rate,
        stream_closed=stream_closed[0] if stream_closed else None,
    )


def post_to_fill(
    *,
    base_url: str,
    ws_url: str,
    staff_token: str,
    clients: list[Client],
    instruments: list[Instrument],
    rate: float,
    seconds: float,
    fill_timeout: float = 5.0,
) -> LatencyResult:
    return asyncio.run(_latency_load(base_url, ws_url, staff_token, clients, instruments, rate, seconds, fill_timeout))
