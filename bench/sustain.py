"""The sustainable-rate phase's figures per step, and the rule that says whether a step was sustained.

A step is one open-loop run at one offered rate on a freshly restarted stack. Everything here is pure
(no I/O), so the rule can be unit-tested without a stack.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# The step's bar: POST-to-fill p99 at or under this (issue 11's acceptance at 100 orders/s).
P99_LIMIT_SECONDS = 0.100
# Where the first backlog sample is taken, unless the step is shorter than twice this.
EARLY_MARK_SECONDS = 5.0
# Below this share of the offered rate the load generator, not the server, set the pace.
GENERATOR_KEEPS_UP = 0.95


@dataclass(frozen=True, slots=True)
class Step:
    offered_per_s: float
    seconds: float
    sent: int
    accepted: int  # 201 answers
    filled: int  # filled within the fill timeout of its POST
    p50_s: float | None  # POST-to-fill over every order sent, unfilled = infinite
    p99_s: float | None
    achieved_send_per_s: float  # POSTs actually started per second
    send_lag_p99_s: float | None  # how late the generator started its POSTs against their schedule
    generator_cpu: float  # the bench process's CPU while sending, in cores
    backlog_early: float | None  # mean orders in flight over the second before the early mark
    backlog_end: float | None  # the same over the last second of sending
    early_mark_s: float
    errors: dict[str, int]
    dropped_at_restart: int = 0  # queued tasks purged by the restart before the step
    worker_rss_mb: float | None = None  # worker process trees at the end of the step
    peak_connections: int | None = None

    @property
    def not_accepted(self) -> int:
        return self.sent - self.accepted

    @property
    def unfilled(self) -> int:
        return self.sent - self.filled

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def filled_per_s(self) -> float:
        return self.filled / self.seconds if self.seconds else 0.0

    @property
    def backlog_allowance(self) -> float:
        """The largest backlog the end of a step may show without counting as growth.

        The early backlog plus what 100 ms of arrivals add (rate x 100 ms): by Little's law, a backlog
        that grew by less than that means the queueing delay grew by less than the p99 bar. Without
        that slack, two means of a steady count (1.2 early, 1.4 at the end) would fail a step on noise.
        """
        return (self.backlog_early or 0.0) + self.offered_per_s * P99_LIMIT_SECONDS

    @property
    def generator_kept_up(self) -> bool:
        return self.achieved_send_per_s >= GENERATOR_KEEPS_UP * self.offered_per_s

    def shortfalls(self) -> list[str]:
        """Why the step was not sustained; empty when it was."""
        reasons: list[str] = []
        if not self.generator_kept_up:
            reasons.append(
                f"the load generator sent only {self.achieved_send_per_s:.0f}/s of {self.offered_per_s:g}/s "
                f"({self.generator_cpu:.0%} of a core): the rate was not offered"
            )
        if self.not_accepted:
            reasons.append(f"{self.not_accepted:,} of {self.sent:,} not accepted")
        if self.unfilled:
            reasons.append(f"{self.unfilled:,} of {self.sent:,} not filled within the timeout")
        if self.p99_s is None or self.p99_s > P99_LIMIT_SECONDS:
            reasons.append(f"p99 {_ms(self.p99_s)}, over {P99_LIMIT_SECONDS * 1000:.0f} ms")
        if self.backlog_end is None or self.backlog_early is None:
            reasons.append("backlog not sampled (the load generator's event loop stalled for over a second)")
        elif self.backlog_end > self.backlog_allowance:
            reasons.append(
                f"backlog grew: {_count(self.backlog_end)} in flight at the end vs {_count(self.backlog_early)} "
                f"after {self.early_mark_s:g} s"
            )
        return reasons

    @property
    def sustained(self) -> bool:
        return not self.shortfalls()

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("p50_s", "p99_s", "send_lag_p99_s"):
            data[key.removesuffix("_s") + "_ms"] = _json_ms(data.pop(key))
        data.update(
            not_accepted=self.not_accepted,
            unfilled=self.unfilled,
            accepted_per_s=self.accepted_per_s,
            filled_per_s=self.filled_per_s,
            backlog_allowance=self.backlog_allowance,
            sustained=self.sustained,
            shortfalls=self.shortfalls(),
        )
        return data


def early_mark(seconds: float) -> float:
    return min(EARLY_MARK_SECONDS, seconds / 2)


def sustainable_rate(steps: list[Step]) -> float:
    """The highest offered rate sustained, 0 when none was; the climb stops at the first failure."""
    best = 0.0
    for step in steps:
        if not step.sustained:
            break
        best = max(best, step.offered_per_s)
    return best


def _json_ms(seconds: float | None) -> float | None:
    # JSON has no infinity: a percentile that fell on an unfilled order is null (see "unfilled").
    return None if seconds is None or math.isinf(seconds) else seconds * 1000


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return "beyond the fill timeout" if math.isinf(seconds) else f"{seconds * 1000:,.0f} ms"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"
