"""Where a latency run's orders spend their time, and the stack its CPU: diagnostics under the table.

Stages of each order, from the one clock every process of the machine shares: the bench's send time and
the time its first fill reached the stream (`LatencyResult.sent_wall` / `received_wall`), and the rows'
own stamps in between (the order's `created_at`, set in the POST; its first child's, set by routing;
its first fill event's, written by the matching transaction):

- entry: POST sent -> order row stamped (HTTP, the web's request handling up to the INSERT);
- to routing: order stamped -> first child stamped (the rest of the POST and its commit, the route
  task's publish, its delivery, its wait for a process and a CPU, the claim and the routing decision);
- routing and matching: first child -> first fill event (the match, its writes; usually one transaction);
- to the stream: fill event -> fill at the bench (the commit, the sequencer's pass, the channel layer,
  the web's WebSocket).

CPU: the seconds each process tree of the stack used during the run, per order sent (`/proc`, via
psutil): the web, each worker, the sequencer, the embedded Postgres and Redis, and the bench itself.
Never a gate: these say where to look, the table says how fast.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

STAGES = ("entry", "to routing", "routing and matching", "to the stream")
BENCH = "bench (load generator)"
SERVICES = "postgres + redis (embedded)"


@dataclass(frozen=True, slots=True)
class OrderTimes:
    """One order's moments, in epoch seconds."""

    sent: float
    accepted: float
    routed: float
    traded: float
    received: float

    def stages(self) -> tuple[float, float, float, float]:
        return (
            self.accepted - self.sent,
            self.routed - self.accepted,
            self.traded - self.routed,
            self.received - self.traded,
        )


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def stage_percentiles(times: Iterable[OrderTimes]) -> dict[str, tuple[float, float, float]]:
    """(p50, p90, p99) in seconds of each stage over the orders (nearest rank); empty without orders."""
    columns: list[list[float]] = [[] for _ in STAGES]
    for order in times:
        for column, value in zip(columns, order.stages(), strict=True):
            column.append(value)
    if not columns[0]:
        return {}
    result = {}
    for name, column in zip(STAGES, columns, strict=True):
        column.sort()
        result[name] = (_percentile(column, 0.50), _percentile(column, 0.90), _percentile(column, 0.99))
    return result


def describe_stages(times: list[OrderTimes]) -> str:
    percentiles = stage_percentiles(times)
    if not percentiles:
        return "no order filled, no stages"
    parts = [
        f"{name} {p50 * 1000:.1f} / {p90 * 1000:.1f} / {p99 * 1000:.1f}"
        for name, (p50, p90, p99) in percentiles.items()
    ]
    return f"stages of {len(times):,} filled orders, ms p50 / p90 / p99: " + "; ".join(parts)


def order_times(*, sent: Mapping[str, float], received: Mapping[str, float]) -> list[OrderTimes]:
    """The moments of every order that was both sent and filled, read from the database (three reads)."""
    from django.db import connection

    from orders.models import ChildOrder, Order, StreamEvent

    order_ids = sorted(set(sent) & set(received))
    if not order_ids:
        return []
    since = min(sent[order_id] for order_id in order_ids)
    with connection.cursor() as cursor:
        # Table names from the models; values bound.
        cursor.execute(
            f"SELECT o.order_id::text, extract(epoch FROM o.created_at)::float8, "
            f"extract(epoch FROM min(c.created_at))::float8 "
            f"FROM {Order._meta.db_table} o JOIN {ChildOrder._meta.db_table} c ON c.parent_id = o.id "
            f"WHERE o.order_id = ANY(%s::uuid[]) GROUP BY o.id",
            [order_ids],
        )
        accepted_routed = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        # The first fill event of each order, over the run's events only (the stamp is indexed).
        cursor.execute(
            f"SELECT payload->'trade'->>'orderId', extract(epoch FROM min(created_at))::float8 "
            f"FROM {StreamEvent._meta.db_table} WHERE kind = 'fill' AND created_at >= to_timestamp(%s) "
            f"GROUP BY 1",
            [since],
        )
        traded = dict(cursor.fetchall())
    return [
        OrderTimes(
            sent=sent[order_id],
            accepted=accepted_routed[order_id][0],
            routed=accepted_routed[order_id][1],
            traded=traded[order_id],
            received=received[order_id],
        )
        for order_id in order_ids
        if order_id in accepted_routed and order_id in traded
    ]


def _tree_seconds(root: psutil.Process) -> float:
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # a pool child may exit between the listing and the reading
            continue
        total += times.user + times.system
    return total


def cpu_seconds(children: Mapping[str, subprocess.Popen[bytes]], run_dir: Path) -> dict[str, float]:
    """CPU seconds used so far by each child's process tree, by the embedded Postgres and Redis (the
    servers whose command line names the run's directory, with their children), and by this process."""
    seconds: dict[str, float] = {}
    for name, child in children.items():
        try:
            seconds[name] = _tree_seconds(psutil.Process(child.pid))
        except psutil.Error:
            continue
    services = 0.0
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(run_dir) in " ".join(process.info["cmdline"] or ()):
                services += _tree_seconds(process)
        except psutil.Error:
            continue
    seconds[SERVICES] = services
    own = psutil.Process().cpu_times()
    seconds[BENCH] = own.user + own.system
    return seconds


def describe_cpu(before: Mapping[str, float], after: Mapping[str, float], orders: int) -> str:
    """Milliseconds of CPU per order of each process, and their total."""
    if orders <= 0:
        return "no order sent, no CPU per order"
    per_order = {name: (after[name] - before[name]) * 1000 / orders for name in after if name in before}
    parts = [f"{name} {ms:.2f}" for name, ms in per_order.items()]
    return f"CPU ms per order sent: {', '.join(parts)}; total {sum(per_order.values()):.1f}"
