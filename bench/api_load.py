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
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.hotbook import crossing_price

CENT = Decimal("0.01")
POST_TIMEOUT = 10.0
HTTP_KEEPALIVE_PER_POOL = 32


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
            # Flips once per full round of the tickers, so each (customer, ticker) alternates Buy and Sell
            # and a fast run cannot drain a customer's cash or shares for the phases after it.
            direction = "Buy" if (worker + number) // len(instruments) % 2 == 0 else "Sell"
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
    achieved_rate: float = 0.0  # POSTs started per second, from the first to the last
    stream_closed: str | None = None  # set when the server closed the fill stream mid-run
    # Seconds each POST started after its scheduled time: how far the load generator fell behind.
    send_lags: list[float] = field(default_factory=list)
    # (seconds since the first send, orders sent and neither failed nor filled yet), every sample_every.
    in_flight: list[tuple[float, int]] = field(default_factory=list)
    # CPU seconds the bench process used per second of sending (1.0 = one whole core).
    generator_cpu: float = 0.0
    # Wall-clock times (epoch seconds, the clock the stack's processes stamp their rows with), by order
    # id: when its POST started, and when its first fill reached the stream (bench.breakdown).
    sent_wall: dict[str, float] = field(default_factory=dict)
    received_wall: dict[str, float] = field(default_factory=dict)

    @property
    def unfilled(self) -> int:
        """Sent orders with no fill within the timeout: not accepted, or accepted and not filled."""
        return self.sent - len(self.latencies)

    def percentile_over_sent(self, fraction: float) -> float | None:
        """Percentile over every order sent, an unfilled one counting as infinitely late.

        Taking it over the filled orders only would report the lucky few when most orders fail.
        """
        return percentile(self.latencies + [math.inf] * self.unfilled, fraction)

    def backlog(self, at: float, window: float = 1.0) -> float | None:
        """Mean number of orders in flight over the `window` seconds before `at` (seconds after the start).

        A mean over a window rather than one sample: at a steady state the count jumps by a few orders
        from one instant to the next, and two single samples would compare noise.
        """
        samples = [count for when, count in self.in_flight if at - window < when <= at]
        return sum(samples) / len(samples) if samples else None


def marketable_price(reference: Decimal, direction: str) -> Decimal:
    # 2% through the reference clears every level the simulated providers quote (at most ~0.6% away),
    # so the order fills on arrival at whichever lit venue it is routed to.
    if direction == "Buy":
        return (reference * Decimal("1.02")).quantize(CENT, rounding=ROUND_CEILING)
    return (reference * Decimal("0.98")).quantize(CENT, rounding=ROUND_FLOOR)


class OrderMix:
    """Who sends what, order after order: clients in turn, tickers in turn, a share on one hot ticker.

    Each (customer, ticker) alternates Buy and Sell, starting with a Buy, so however many orders a run
    sends, no customer runs out of cash or shares: an order rejected for funds would count as unfilled
    and measure the demo accounts instead of the pipeline.
    """

    def __init__(
        self, clients: list[Client], instruments: list[Instrument], hot: Instrument | None = None, hot_share: float = 0
    ) -> None:
        self.clients = clients
        self.instruments = instruments
        self.hot = hot
        self.hot_share = hot_share if hot is not None else 0.0
        self._spread = 0
        self._hot = 0
        self._placed: Counter[tuple[str, str]] = Counter()

    def order(self, number: int) -> tuple[Client, Instrument, str]:
        # Every 1/hot_share-th order (evenly spread, not in bursts) goes to the hot ticker.
        if self.hot is not None and math.floor((number + 1) * self.hot_share) > math.floor(number * self.hot_share):
            instrument, turn = self.hot, self._hot
            self._hot += 1
        else:
            instrument, turn = self.instruments[self._spread % len(self.instruments)], self._spread
            self._spread += 1
        client = self.clients[turn % len(self.clients)]
        key = (client.customer_id, instrument.symbol)
        direction = "Buy" if self._placed[key] % 2 == 0 else "Sell"
        self._placed[key] += 1
        return client, instrument, direction


@dataclass(slots=True)
class _Progress:
    sent: int = 0
    failed: int = 0
    filled: int = 0  # accepted orders of this run with a fill received, however late

    @property
    def in_flight(self) -> int:
        return self.sent - self.failed - self.filled


async def _latency_load(
    base_url: str,
    ws_url: str,
    staff_token: str,
    mix: OrderMix,
    rate: float,
    seconds: float,
    fill_timeout: float,
    sample_every: float,
) -> LatencyResult:
    sent_at: dict[str, float] = {}
    first_fill: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    received_wall: dict[str, float] = {}
    post_latencies: list[float] = []
    send_lags: list[float] = []
    last_post = 0.0
    errors: Counter[str] = Counter()
    stream_closed: list[str] = []
    progress = _Progress()
    in_flight: list[tuple[float, int]] = []
    start = time.perf_counter()
    # No cap on connections: in an open-loop test a client-side pool limit would queue orders in the
    # bench instead of at the server, and hide the server's own behaviour under the offered load.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=HTTP_KEEPALIVE_PER_POOL)
    async with contextlib.AsyncExitStack() as stack:
        ws = await stack.enter_async_context(
            connect(f"{ws_url}/ws/fills/?token={staff_token}", open_timeout=30, max_size=None)
        )
        # One connection pool per customer: httpcore's pool does work quadratic in its connections on
        # every request, and one pool of hundreds of connections held the generator under ~300 orders/s
        # on a core. 10 s timeout: an order not even accepted by then would count as missed anyway.
        pools = {
            client.customer_id: await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, limits=limits, timeout=POST_TIMEOUT)
            )
            for client in mix.clients
        }
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
                        order_id = str(message["trade"]["orderId"])
                        if order_id not in first_fill:
                            first_fill[order_id] = received
                            received_wall[order_id] = time.time()
                            if order_id in sent_at:
                                progress.filled += 1
            except ConnectionClosed as closed:
                # The server ending the stream is a result (fills after it count as missed), not a
                # reason to lose the whole run.
                stream_closed.append(f"closed {time.perf_counter() - start:.1f} s in: {closed}")

        async def sample() -> None:
            while True:
                in_flight.append((time.perf_counter() - start, progress.in_flight))
                await asyncio.sleep(sample_every)

        reader = asyncio.create_task(read_fills())

        async def send(client: Client, body: dict[str, Any], scheduled: float) -> None:
            nonlocal last_post
            started = time.perf_counter()
            started_wall = time.time()
            send_lags.append(started - scheduled)
            last_post = max(last_post, started)
            try:
                response = await pools[client.customer_id].post(
                    "/api/orders", json=body, headers={"Authorization": f"Token {client.token}"}
                )
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1
                progress.failed += 1
                return
            if response.status_code != 201:
                errors[f"HTTP {response.status_code}"] += 1
                progress.failed += 1
                return
            post_latencies.append(time.perf_counter() - started)
            order_id = str(response.json()["orderId"])
            sent_at[order_id] = started
            sent_wall[order_id] = started_wall
            # The fill may well have beaten the 201 here.
            if order_id in first_fill:
                progress.filled += 1

        # Open loop at a steady rate: each order goes at its scheduled time whether or not earlier
        # ones were answered, so a slow server shows up as latency instead of a lower send rate.
        total = round(rate * seconds)
        start = time.perf_counter()
        cpu_start = time.process_time()
        sampler = asyncio.create_task(sample())
        pending: list[asyncio.Task[None]] = []
        for number in range(total):
            scheduled = start + number / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            client, instrument, direction = mix.order(number)
            body = _order_body(client, instrument, direction, marketable_price(instrument.reference, direction))
            pending.append(asyncio.create_task(send(client, body, scheduled)))
            progress.sent += 1
        await asyncio.gather(*pending)
        generator_cpu = (time.process_time() - cpu_start) / max(time.perf_counter() - start, 1e-9)
        # From the first scheduled send to the last POST actually started, one interval counted per
        # order: exactly `rate` when the generator kept up.
        achieved_rate = total / (last_post - start + 1 / rate) if total else 0.0
        # Every accepted order gets fill_timeout from its own send time to produce a fill.
        last_deadline = max(sent_at.values(), default=time.perf_counter()) + fill_timeout
        while time.perf_counter() < last_deadline and not reader.done() and progress.filled < len(sent_at):
            await asyncio.sleep(0.05)
        for task in (reader, sampler):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    latencies: list[float] = []
    missed = 0
    for order_id, started in sent_at.items():
        received = first_fill.get(order_id)
        if received is None or received - started > fill_timeout:
            missed += 1
        else:
            latencies.append(received - started)
    return LatencyResult(
        sent=progress.sent,
        accepted=len(sent_at),
        latencies=latencies,
        post_latencies=post_latencies,
        missed=missed,
        errors=errors,
        achieved_rate=achieved_rate,
        stream_closed=stream_closed[0] if stream_closed else None,
        send_lags=send_lags,
        in_flight=in_flight,
        generator_cpu=generator_cpu,
        sent_wall=sent_wall,
        received_wall=received_wall,
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
    hot: Instrument | None = None,
    hot_share: float = 0.0,
    sample_every: float = 0.1,
) -> LatencyResult:
    """Marketable orders sent open-loop at `rate` for `seconds`; each order's time from POST to first fill.

    With `hot`, that ticker takes `hot_share` of the orders and the rest go round `instruments`.
    """
    mix = OrderMix(clients, instruments, hot=hot, hot_share=hot_share)
    return asyncio.run(_latency_load(base_url, ws_url, staff_token, mix, rate, seconds, fill_timeout, sample_every))
